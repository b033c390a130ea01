"""One builder of the gateway scenarios the tests seed: intents, gateway transactions, PSP
statement lines and cycle log rows of the runbook's tables, in the real PostgreSQL of
``tests/conftest.py`` (``db``).

Most tests start from the same two PSPs on 2026-11-20: ``stripe`` with references ``r1``,
``r2``, ``r3`` and ``adyen`` with ``a1`` (:data:`STRIPE_ADYEN`); each test then says which
rows each side has. Rows are tuples in the tables' column order (below); timestamps are ISO
8601 text, as PostgreSQL reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

#: intents ``(id, provider, provider_reference)``: three stripe references, one adyen one
STRIPE_ADYEN = ((1, "stripe", "r1"), (2, "stripe", "r2"), (3, "stripe", "r3"), (4, "adyen", "a1"))

TRANSACTION_COLUMNS = ("intent_id", "transaction_type", "status", "amount_minor", "currency", "created_at")
STATEMENT_COLUMNS = (
    "psp",
    "provider_reference",
    "transaction_type",
    "status",
    "amount_minor",
    "currency",
    "occurred_at",
    "statement_id",
)
LOG_COLUMNS = ("psp", "cycle_start", "cycle_end", "status")


def _insert(db, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    rows = [tuple(row) for row in rows]
    if not rows:
        return
    if any(len(row) != len(columns) for row in rows):
        raise ValueError(f"{table}: every row needs the values of {columns}")
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    db.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([one] * len(rows)),
        [value for row in rows for value in row],
    )


def intents(db, rows: Iterable[tuple[int, str, str]] = STRIPE_ADYEN) -> None:
    """``payment_intents`` rows ``(id, provider, provider_reference)``."""
    _insert(db, "payment_intents", ("id", "provider", "provider_reference"), rows)


def transactions(db, rows: Iterable[Sequence[Any]], *, extra: Sequence[str] = ()) -> None:
    """``payment_transactions`` rows in :data:`TRANSACTION_COLUMNS` order, then ``extra``
    columns (e.g. ``("processed_at",)``)."""
    _insert(db, "payment_transactions", (*TRANSACTION_COLUMNS, *extra), rows)


def captures(db, rows: Iterable[tuple[int, int, str]], *, currency: str = "BRL") -> None:
    """Captured gateway captures ``(intent_id, amount_minor, created_at)``."""
    transactions(db, [(intent, "capture", "captured", amount, currency, at) for intent, amount, at in rows])


def statement_lines(db, rows: Iterable[Sequence[Any]]) -> None:
    """``psp_statement_lines`` rows in :data:`STATEMENT_COLUMNS` order."""
    _insert(db, "psp_statement_lines", STATEMENT_COLUMNS, rows)


def cycle_logs(db, rows: Iterable[Sequence[Any]], *, extra: Sequence[str] = ()) -> None:
    """``payment_reconciliation_logs`` rows in :data:`LOG_COLUMNS` order, then ``extra``
    columns (e.g. ``("created_at",)``)."""
    _insert(db, "payment_reconciliation_logs", (*LOG_COLUMNS, *extra), rows)


def stripe_adyen(
    db,
    *,
    captures_at: Sequence[tuple[int, int, str]] = (
        (1, 1000, "2026-11-20T10:10Z"),
        (2, 500, "2026-11-20T10:20Z"),
        (3, 700, "2026-11-20T10:30Z"),
        (4, 100, "2026-11-20T10:29Z"),
    ),
):
    """The shared start: :data:`STRIPE_ADYEN` intents and one BRL capture each
    ``(intent_id, amount_minor, created_at)``; by default stripe r1 1000, r2 500, r3 700 and
    adyen a1 100 in [10:00, 11:00) of 2026-11-20. Statement lines are each test's own."""
    intents(db)
    captures(db, captures_at)
    return db


__all__ = [
    "LOG_COLUMNS",
    "STATEMENT_COLUMNS",
    "STRIPE_ADYEN",
    "TRANSACTION_COLUMNS",
    "captures",
    "cycle_logs",
    "intents",
    "statement_lines",
    "stripe_adyen",
    "transactions",
]
