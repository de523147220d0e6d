"""Caps and money: what a run may spend, and how it is enforced."""

from budgets._budget import Budget

__all__ = ["Budget"]
