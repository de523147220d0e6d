"""Caps and money: what a run may spend, how each request is priced, and how caps are enforced."""

from typing import TypeAlias

from budgets._budget import Budget
from budgets._daily import DailySpend, Hold, SpendToday
from budgets._estimate import input_token_bound
from budgets._guard import (
    DEFAULT_OUTPUT_ALLOWANCE,
    MIN_OUTPUT_ALLOWANCE,
    BudgetEvent,
    BudgetExceeded,
    BudgetGuard,
    SpendGate,
    SpendHooks,
    StopReason,
)
from budgets._loops import ToolCallGuard, call_key
from budgets._pricing import ModelPrice, Pricer, pricer_for
from tools.errors import ResearchAgentError

CapReason: TypeAlias = StopReason
"""Which cap stopped a run (`BudgetExceeded.reason`, `SpendGate.reason`); the agent's run stop reasons include these."""

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
