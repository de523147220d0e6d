"""Caps and money: what a run may spend, how each request is priced, and how caps are enforced."""

from budgets._budget import Budget
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
from budgets._loops import ToolCallGuard
from budgets._pricing import ModelPrice, Pricer, pricer_for

__all__ = [
    "DEFAULT_OUTPUT_ALLOWANCE",
    "MIN_OUTPUT_ALLOWANCE",
    "Budget",
    "BudgetEvent",
    "BudgetExceeded",
    "BudgetGuard",
    "ModelPrice",
    "Pricer",
    "SpendGate",
    "SpendHooks",
    "StopReason",
    "ToolCallGuard",
    "input_token_bound",
    "pricer_for",
]
