"""A scripted model that is as expensive as the budget lets it be, for daily-cap tests in worker processes.

`factory:tests._costly:costly_model` researches like `tests.scripted.crash_model` but reports that every
response used its whole output allowance (`max_tokens`, as trimmed by the budget guard), so the actual
cost of each request is close to the worst case that was reserved for it: spend approaches the cap for
real instead of staying far below it. A short sleep per call makes concurrent runs overlap.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from budgets import DEFAULT_OUTPUT_ALLOWANCE
from tests.scripted import ResearchScript, read_history

INPUT_TOKENS = 500  # well under the guard's input bound for these short histories


def costly_model() -> FunctionModel:
    script = ResearchScript(max_fetches=int(os.environ.get("RA_SCRIPT_MAX_FETCHES", "2")))
    log = Path(os.environ["RA_SCRIPT_LOG"]) if os.environ.get("RA_SCRIPT_LOG") else None

    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await asyncio.sleep(0.05)
        response = script.decide(messages, info)
        allowance = (info.model_settings or {}).get("max_tokens") or DEFAULT_OUTPUT_ALLOWANCE
        response.usage = RequestUsage(input_tokens=INPUT_TOKENS, output_tokens=allowance)
        if log is not None:
            with log.open("a") as handle:
                entry = {"pid": os.getpid(), "messages": len(messages), "question": read_history(messages).question}
                handle.write(json.dumps(entry) + "\n")
        return response

    return FunctionModel(respond, model_name="scripted-costly")
