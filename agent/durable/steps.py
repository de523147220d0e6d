"""Turning committed pydantic-ai messages into the human-readable steps `runs show` prints."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal

from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    RetryFeedbackPart,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_core import to_jsonable_python

from agent.durable.store import JSONValue, StepRecord

SUMMARY_CHARS = 300


def _shorten(text: str, limit: int = SUMMARY_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def response_cost(response: ModelResponse) -> Decimal | None:
    """The response's price from genai-prices, or None when the model has no known price."""
    if response.usage.cost is not None:
        return response.usage.cost
    try:
        return response.cost().total_price
    except (AssertionError, LookupError, ValueError):
        return None


def _summarize_result(content: object) -> tuple[str, bool]:
    data = to_jsonable_python(content, fallback=str)
    ok = not (isinstance(data, dict) and data.get("ok") is False)
    if isinstance(data, dict) and not ok:
        return _shorten(f"{data.get('error', 'error')}: {data.get('message', '')}"), False
    if isinstance(data, dict):
        visible = {k: v for k, v in data.items() if k not in ("text", "results")}
        if "result_count" in data:
            return _shorten(f"{data['result_count']} results; " + json.dumps(visible, default=str)), True
        return _shorten(json.dumps(visible, default=str)), True
    return _shorten(str(data)), True


def _response_summary(response: ModelResponse) -> str:
    pieces: list[str] = []
    for part in response.parts:
        if isinstance(part, TextPart) and part.content.strip():
            pieces.append(part.content)
        elif isinstance(part, ToolCallPart):
            pieces.append(f"→ {part.tool_name}({_shorten(part.args_as_json_str(), 120)})")
    return _shorten(" ".join(pieces))


def build_steps(
    messages: Sequence[ModelMessage],
    *,
    first_seq: int,
    calls_by_id: Mapping[str, ToolCallPart],
    tool_latency_ms: Mapping[str, float],
    model_latency_ms: float | None,
) -> list[StepRecord]:
    """One step per model response, per tool result, and per rejected output (a retry prompt)."""
    steps: list[StepRecord] = []

    def add(**fields: object) -> None:
        steps.append(StepRecord(seq=first_seq + len(steps), **fields))  # type: ignore[arg-type]

    for message in messages:
        if isinstance(message, ModelResponse):
            add(
                kind="model",
                name=message.model_name or "model",
                summary=_response_summary(message),
                input_tokens=message.usage.input_tokens,
                output_tokens=message.usage.output_tokens,
                cost_usd=response_cost(message),
                latency_ms=model_latency_ms,
            )
            continue
        for part in message.parts:
            if isinstance(part, ToolReturnPart):
                call = calls_by_id.get(part.tool_call_id)
                args: JSONValue = call.args_as_dict() if call else None
                summary, ok = _summarize_result(part.content)
                if part.outcome != "success":
                    summary, ok = _shorten(f"{part.outcome}: {part.model_response_str()}"), False
                add(
                    kind="plan" if part.tool_name == "record_plan" else "tool",
                    name=part.tool_name,
                    tool_call_id=part.tool_call_id,
                    args=args,
                    summary=summary,
                    ok=ok,
                    latency_ms=tool_latency_ms.get(part.tool_call_id),
                )
            elif isinstance(part, RetryFeedbackPart):
                add(kind="event", name="retry_feedback", summary=_shorten(str(part.content)), ok=False)
            elif isinstance(part, RetryPromptPart):
                call = calls_by_id.get(part.tool_call_id)
                add(
                    kind="tool" if part.tool_name else "event",
                    name=part.tool_name or "retry",
                    tool_call_id=part.tool_call_id,
                    args=call.args_as_dict() if call else None,
                    summary=_shorten(part.model_response()),
                    ok=False,
                    latency_ms=tool_latency_ms.get(part.tool_call_id),
                )
    return steps


def index_tool_calls(messages: Sequence[ModelMessage]) -> dict[str, ToolCallPart]:
    return {
        part.tool_call_id: part
        for message in messages
        if isinstance(message, ModelResponse)
        for part in message.parts
        if isinstance(part, ToolCallPart)
    }
