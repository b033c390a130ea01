"""Divergence kinds (DESIGN section 3), in the order in which they are decided."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from airflow_recon_provider.reconciliation.errors import DivergenceKindError


class DivergenceKind(StrEnum):
    """What went wrong for one ``(provider_reference, transaction_type)`` key.

    A key has exactly one kind: the first one, in declaration order, that applies.
    """

    DUPLICATE_IN_GATEWAY = "duplicate_in_gateway"
    DUPLICATE_IN_STATEMENT = "duplicate_in_statement"
    MISSING_IN_STATEMENT = "missing_in_statement"
    MISSING_IN_GATEWAY = "missing_in_gateway"
    CURRENCY_MISMATCH = "currency_mismatch"
    AMOUNT_MISMATCH = "amount_mismatch"
    STATUS_MISMATCH = "status_mismatch"

    def __str__(self) -> str:
        return self.value

    @property
    def rank(self) -> int:
        return list(DivergenceKind).index(self)

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


ALL_KINDS: tuple[DivergenceKind, ...] = tuple(DivergenceKind)


def parse_kinds(value: str | Iterable[str] | None) -> tuple[DivergenceKind, ...]:
    """Parse ``"a,b"`` or ``["a", "b"]`` into kinds; empty or ``None`` means all kinds."""
    if value is None:
        return ALL_KINDS
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(item).strip() for item in items if str(item).strip()]
    if not names:
        return ALL_KINDS
    known = {kind.value: kind for kind in DivergenceKind}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise DivergenceKindError(
            f"unknown divergence kind(s): {', '.join(repr(n) for n in unknown)}; "
            f"expected any of: {', '.join(known)}"
        )
    chosen = {known[name] for name in names}
    return tuple(kind for kind in ALL_KINDS if kind in chosen)
