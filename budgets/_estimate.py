"""A conservative count of the input tokens a request will be billed for, before sending it.

Byte-level BPE tokenizers (OpenAI, Anthropic, Llama...) never produce more tokens than the text has
UTF-8 bytes, so counting bytes is an upper bound that holds for every language and for code, at the
price of over-estimating English about fourfold. The cost cap needs a bound, not a guess.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter
from pydantic_ai.models import ModelRequestParameters

REQUEST_OVERHEAD_TOKENS = 64
"""Framing a provider adds to every request (role markers, tool-call wrappers)."""


def input_token_bound(
    messages: Sequence[ModelMessage], parameters: ModelRequestParameters, *, instructions: str = ""
) -> int:
    """An upper bound on the input tokens of a request carrying `messages`, the tools and instructions."""
    payload = ModelMessagesTypeAdapter.dump_json(list(messages))
    tools = [
        {"name": t.name, "description": t.description, "parameters": t.parameters_json_schema}
        for t in [*parameters.function_tools, *parameters.output_tools]
    ]
    tool_bytes = len(json.dumps(tools).encode())
    return REQUEST_OVERHEAD_TOKENS + len(payload) + tool_bytes + len(instructions.encode())
