"""Caps and money: what a run may spend, how each request is priced, and how caps are enforced.

Each public name is imported from its module on first use (PEP 562 `__getattr__`): `Budget`, `ModelPrice`,
`DailySpend` and the stop reasons are read by processes that never run the agent loop (settings, the CLI's
read-only commands) and must not pay for pydantic-ai, which `BudgetGuard` and `ToolCallGuard` need. Type
checkers and IDEs read the same names from the imports under `TYPE_CHECKING`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tools.lazy import lazy_exports

if TYPE_CHECKING:
    from budgets._budget import Budget
    from budgets._daily import DailySpend, Hold, SpendToday
    from budgets._estimate import input_token_bound
    from budgets._guard import DEFAULT_OUTPUT_ALLOWANCE, MIN_OUTPUT_ALLOWANCE, BudgetEvent, BudgetGuard
    from budgets._loops import ToolCallGuard, call_key
    from budgets._pricing import ModelPrice, Pricer, pricer_for
    from budgets._stops import BudgetExceeded, CapReason, SpendGate, SpendHooks, StopReason
    from tools.errors import ResearchAgentError

__all__ = [
    "DEFAULT_OUTPUT_ALLOWANCE",
    "MIN_OUTPUT_ALLOWANCE",
    "Budget",
    "BudgetEvent",
    "BudgetExceeded",
    "BudgetGuard",
    "CapReason",
    "DailySpend",
    "Hold",
    "ModelPrice",
    "Pricer",
    "ResearchAgentError",
    "SpendGate",
    "SpendHooks",
    "SpendToday",
    "StopReason",
    "ToolCallGuard",
    "call_key",
    "input_token_bound",
    "pricer_for",
]

_MODULES: dict[str, tuple[str, ...]] = {
    "budgets._budget": ("Budget",),
    "budgets._daily": ("DailySpend", "Hold", "SpendToday"),
    "budgets._estimate": ("input_token_bound",),
    "budgets._guard": ("DEFAULT_OUTPUT_ALLOWANCE", "MIN_OUTPUT_ALLOWANCE", "BudgetEvent", "BudgetGuard"),
    "budgets._loops": ("ToolCallGuard", "call_key"),
    "budgets._pricing": ("ModelPrice", "Pricer", "pricer_for"),
    "budgets._stops": ("BudgetExceeded", "CapReason", "SpendGate", "SpendHooks", "StopReason"),
    "tools.errors": ("ResearchAgentError",),
}
"""Where each public name lives (keep in step with the imports above); only its module is imported."""
_EXPORTS, _getattr, __dir__ = lazy_exports(_MODULES, globals())

if not TYPE_CHECKING:  # type checkers see the imports above, and an unknown name stays an error for them
    __getattr__ = _getattr
