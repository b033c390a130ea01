"""What a PSP gets in a ticket about divergent transactions (pure, no Airflow).

Runbook, Mitigação 4 (Sincronização com PSP): "Abrir chamado junto ao PSP fornecendo IDs
das transações divergentes quando inconsistência for externa." External inconsistencies
are the kinds where the PSP's statement and the gateway disagree about what happened;
duplicates inside the gateway and status vocabulary differences are ours to fix.
"""

from __future__ import annotations

import ast
import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from airflow_recon_provider.reconciliation.errors import DivergenceKindError
from airflow_recon_provider.reconciliation.kinds import DivergenceKind, parse_kinds
from airflow_recon_provider.reconciliation.report import DivergenceRow

#: kinds a PSP ticket covers by default
EXTERNAL_KINDS: tuple[DivergenceKind, ...] = (
    DivergenceKind.DUPLICATE_IN_STATEMENT,
    DivergenceKind.MISSING_IN_STATEMENT,
    DivergenceKind.MISSING_IN_GATEWAY,
    DivergenceKind.CURRENCY_MISMATCH,
    DivergenceKind.AMOUNT_MISMATCH,
)

#: columns of the ticket CSV, in order
TICKET_FIELDS: tuple[str, ...] = (
    "provider_reference",
    "transaction_type",
    "kind",
    "gateway_transaction_id",
    "gateway_amount_minor",
    "statement_amount_minor",
    "divergent_amount_minor",
    "currency",
    "gateway_status",
    "statement_status",
)


def parse_ticket_kinds(value: Any) -> tuple[DivergenceKind, ...]:
    """Kinds from an operator argument: a list, ``"a,b"``, or a rendered list such as
    ``"['a', 'b']"``; empty means :data:`EXTERNAL_KINDS`."""
    if value is None or (isinstance(value, str) and value.strip() in {"", "None", "[]"}):
        return EXTERNAL_KINDS
    if isinstance(value, str) and value.strip().startswith(("[", "(")):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise DivergenceKindError(f"divergence kinds {value!r} are not a list of kind names") from None
    if not isinstance(value, str | list | tuple):
        raise DivergenceKindError(f"divergence kinds {value!r} are not a list of kind names")
    return parse_kinds(value) if value else EXTERNAL_KINDS


def ticket_row(row: DivergenceRow) -> dict[str, Any]:
    return {
        "provider_reference": row.provider_reference,
        "transaction_type": row.transaction_type,
        "kind": row.kind.value,
        "gateway_transaction_id": row.gateway_first_id,
        "gateway_amount_minor": row.gateway_amount_minor,
        "statement_amount_minor": row.statement_amount_minor,
        "divergent_amount_minor": row.divergent_amount_minor,
        "currency": row.currency,
        "gateway_status": row.gateway_status,
        "statement_status": row.statement_status,
    }


@dataclass
class TicketCounts:
    """Figures of a ticket CSV (never its rows)."""

    rows: int = 0
    divergent_amount_minor: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def write_ticket_csv(rows: Iterable[DivergenceRow], out: IO[str]) -> TicketCounts:
    """Stream ``rows`` to ``out`` as the ticket CSV (header first); return the counts."""
    writer = csv.DictWriter(out, fieldnames=TICKET_FIELDS, lineterminator="\n")
    writer.writeheader()
    counts = TicketCounts()
    for row in rows:
        writer.writerow(ticket_row(row))
        counts.rows += 1
        counts.divergent_amount_minor += row.divergent_amount_minor
        counts.by_kind[row.kind.value] = counts.by_kind.get(row.kind.value, 0) + 1
    return counts


def check_ticket_number(value: Any) -> str | None:
    """The PSP's ticket number as given (``None`` when not opened yet)."""
    if value is None:
        return None
    text = str(value).strip()
    if text in {"", "None"}:
        return None
    if len(text) > 100 or not text.isprintable():
        raise ValueError(f"PSP ticket number {text[:40]!r} must be one line of at most 100 characters")
    return text


__all__ = [
    "EXTERNAL_KINDS",
    "TICKET_FIELDS",
    "TicketCounts",
    "check_ticket_number",
    "parse_ticket_kinds",
    "ticket_row",
    "write_ticket_csv",
]
