"""What a request costs: genai-prices (through pydantic-ai's model names) or a price the user supplies.

A run under a cost cap needs a price for its model before its first request; `pricer_for` returns
None for a model with no known price and no user-supplied one, and the runner refuses it with a message
naming the setting to use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # imported where used: `ModelPrice` is read with the settings, without pydantic-ai
    from pydantic_ai.models import Model

MILLION = Decimal(1_000_000)
FREE_SYSTEMS = frozenset({"offline"})
"""Models that never cost anything (the deterministic offline model)."""


class ModelPrice(BaseModel):
    """A user-supplied price, in dollars per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: Decimal = Field(ge=0)
    output_per_mtok: Decimal = Field(ge=0)


class Pricer(Protocol):
    @property
    def name(self) -> str: ...

    def price(self, *, input_tokens: int, output_tokens: int) -> Decimal:
        """Dollars for one request with this many tokens."""
        ...


@dataclass(frozen=True)
class FixedPricer:
    name: str
    per_token_in: Decimal
    per_token_out: Decimal

    def price(self, *, input_tokens: int, output_tokens: int) -> Decimal:
        return input_tokens * self.per_token_in + output_tokens * self.per_token_out


@dataclass(frozen=True)
class GenaiPricer:
    """genai-prices, which knows tiered prices (a long prompt can raise the per-token rate)."""

    name: str
    model_ref: str
    provider_id: str | None

    def price(self, *, input_tokens: int, output_tokens: int) -> Decimal:
        from genai_prices import Usage, calc_price

        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        return calc_price(usage, self.model_ref, provider_id=self.provider_id).total_price


@dataclass(frozen=True)
class MaxPricer:
    """A fallback chain may answer with any of its models: budget for the most expensive one."""

    name: str
    pricers: tuple[Pricer, ...]

    def price(self, *, input_tokens: int, output_tokens: int) -> Decimal:
        return max(p.price(input_tokens=input_tokens, output_tokens=output_tokens) for p in self.pricers)


def _override(model: Model, overrides: Mapping[str, ModelPrice]) -> ModelPrice | None:
    for key in (f"{model.system}:{model.model_name}", model.model_name, f"{model.system}:*"):
        if key in overrides:
            return overrides[key]
    return None


def pricer_for(model: Model, *, overrides: Mapping[str, ModelPrice]) -> Pricer | None:
    """How to price requests to `model`, or None when no price is known."""
    from pydantic_ai.models.fallback import FallbackModel

    if isinstance(model, FallbackModel):
        parts = [pricer_for(m, overrides=overrides) for m in model.models]
        if any(p is None for p in parts):
            return None
        return MaxPricer(name=model.model_name, pricers=tuple(p for p in parts if p is not None))
    name = f"{model.system}:{model.model_name}"
    if model.system in FREE_SYSTEMS:
        return FixedPricer(name, Decimal(0), Decimal(0))
    override = _override(model, overrides)
    if override is not None:
        return FixedPricer(name, override.input_per_mtok / MILLION, override.output_per_mtok / MILLION)
    candidate = GenaiPricer(name=name, model_ref=model.model_name, provider_id=model.system)
    try:
        candidate.price(input_tokens=1, output_tokens=1)
    except LookupError:
        return None
    return candidate
