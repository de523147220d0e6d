"""Dollars as people read them: one formatter for the CLI's tables and the API objects' reprs.

Amounts stay exact `Decimal`s in every field and in JSON; only what a person reads is formatted here.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

_FOUR_PLACES = Decimal("0.0001")


def money(value: Decimal | None) -> str:
    """`$0.0123`, `$1,234.5000`; a cost too small for four places is written out (`$0.00002125`), never
    `$0.0000`; `-` when unknown."""
    if value is None:
        return "-"
    if value == 0 or abs(value) >= _FOUR_PLACES:
        return f"${value:,.4f}"
    return "$" + f"{value:.8f}".rstrip("0")


def plain_money(value: Decimal) -> Decimal:
    """A stored amount in plain form: `numeric(14, 8)` reads back as `Decimal('0E-8')` or `Decimal('0.00210000')`;
    this gives `Decimal('0')` and `Decimal('0.0021')` (the same values). No exponent above a millionth of a
    dollar (`Decimal('100')`, not `Decimal('1E+2')`); below it `Decimal` itself writes one, still exact."""
    plain = value.normalize()
    return plain.quantize(Decimal(1)) if plain == plain.to_integral_value() else plain


def money_text(value: Decimal) -> str:
    """An amount as JSON carries it: plain notation without trailing zeros, `0`, `0.0021` (never `0E-8`)."""
    return f"{plain_money(value):f}"


def repr_with_money(obj: Any) -> str:
    """A dataclass repr in which dollar fields (`*_usd`) read `$0.0123` instead of `Decimal('0E-8')`."""
    parts = []
    for field in dataclasses.fields(obj):
        if not field.repr:
            continue
        value = getattr(obj, field.name)
        shown = money(value) if field.name.endswith("_usd") and isinstance(value, Decimal) else repr(value)
        parts.append(f"{field.name}={shown}")
    return f"{type(obj).__name__}({', '.join(parts)})"
