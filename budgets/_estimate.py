"""A conservative count of the input tokens a request will be billed for, before sending it.

Byte-level BPE tokenizers (OpenAI, Anthropic, Llama...) never produce more tokens than the text has
UTF-8 bytes, so counting the bytes of everything the request carries (instructions, tool schemas,
every message part) plus a per-part framing allowance is an upper bound that holds for every language
and for code. It over-estimates English about fourfold: the cost cap needs a bound, not a guess.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic_ai.messages import (
    BinaryContent,
    ModelMessage,
    ModelRequest,
    RetryFeedbackPart,
    RetryPromptPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import ModelRequestParameters

REQUEST_OVERHEAD_TOKENS = 64
"""Framing a provider adds to every request."""
PART_OVERHEAD_TOKENS = 16
"""Framing per message part (role markers, tool-call ids and wrappers)."""


def _bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _part_bytes(part: object) -> int:
    if isinstance(part, UserPromptPart):
        if isinstance(part.content, str):
            return _bytes(part.content)
        return sum(len(item.data) if isinstance(item, BinaryContent) else _bytes(str(item)) for item in part.content)
    if isinstance(part, ToolReturnPart):
        return _bytes(part.tool_name) + _bytes(part.model_response_str())
    if isinstance(part, RetryPromptPart):
        return _bytes(part.model_response())
    if isinstance(part, RetryFeedbackPart):
        return _bytes(json.dumps(part.content, default=str)) + 256  # plus the framework's fixed wording
    if isinstance(part, TextPart | ThinkingPart):
        return _bytes(part.content)
    if isinstance(part, ToolCallPart):
        return _bytes(part.tool_name) + _bytes(part.args_as_json_str())
    content = getattr(part, "content", None)
    return _bytes(content if isinstance(content, str) else json.dumps(content, default=str))


def input_token_bound(messages: Sequence[ModelMessage], parameters: ModelRequestParameters) -> int:
    """An upper bound on the input tokens of a request carrying `messages`, the tools and instructions."""
    total = REQUEST_OVERHEAD_TOKENS
    for message in messages:
        if isinstance(message, ModelRequest) and message.instructions:
            total += _bytes(message.instructions) + PART_OVERHEAD_TOKENS
        for part in message.parts:
            total += _part_bytes(part) + PART_OVERHEAD_TOKENS
    for instruction in parameters.instruction_parts or []:
        total += _bytes(instruction.content) + PART_OVERHEAD_TOKENS
    tools = [
        {"name": t.name, "description": t.description, "parameters": t.parameters_json_schema}
        for t in [*parameters.function_tools, *parameters.output_tools]
    ]
    return total + _bytes(json.dumps(tools))
