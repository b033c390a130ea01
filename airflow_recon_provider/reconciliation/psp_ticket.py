"""What a PSP gets in a ticket about divergent transactions (pure, no Airflow).

Runbook, Mitigação 4 (Sincronização com PSP): "Abrir chamado junto ao PSP fornecendo IDs
das transações divergentes quando inconsistência for externa." External inconsistencies
are the kinds where the PSP's statement and the gateway disagree about what happened;
duplicates inside the gateway and status vocabulary differences are ours to fix.

Every amount is integer minor units of its own currency and each amount column has its
currency column beside it (DESIGN 3a): a currency mismatch's statement amount is in the
statement's currency, and the extra copies of a duplicate in other currencies are listed in
their own currencies. Totals are per currency, never summed across currencies.
"""

from __future__ import annotations

import ast
import csv
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from airflow_recon_provider.reconciliation.errors import DivergenceKindError, ReconError
from airflow_recon_provider.reconciliation.i18n import _, ngettext
from airflow_recon_provider.reconciliation.kinds import DivergenceKind, parse_kinds
from airflow_recon_provider.reconciliation.money import exponent, format_money
from airflow_recon_provider.reconciliation.report import DivergenceRow
from airflow_recon_provider.reconciliation.spreadsheet import safe_row

#: kinds a PSP ticket covers by default
EXTERNAL_KINDS: tuple[DivergenceKind, ...] = (
    DivergenceKind.DUPLICATE_IN_STATEMENT,
    DivergenceKind.MISSING_IN_STATEMENT,
    DivergenceKind.MISSING_IN_GATEWAY,
    DivergenceKind.CURRENCY_MISMATCH,
    DivergenceKind.AMOUNT_MISMATCH,
)

#: columns of the ticket CSV, in order: each amount (integer minor units) is followed by its
#: currency; ``currency`` is the key's currency, that of ``divergent_amount_minor``;
#: ``other_amounts_minor`` holds the extra copies of a duplicate in other currencies, as a JSON
#: object ``{"EUR": 200}`` (empty when there are none)
TICKET_FIELDS: tuple[str, ...] = (
    "provider_reference",
    "transaction_type",
    "kind",
    "gateway_transaction_id",
    "gateway_amount_minor",
    "gateway_currency",
    "statement_amount_minor",
    "statement_currency",
    "divergent_amount_minor",
    "currency",
    "other_amounts_minor",
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


def _code(currency: str | None) -> str:
    return str(currency or "").strip().upper()


def ticket_row(row: DivergenceRow) -> dict[str, Any]:
    """One CSV line: each amount with the currency it is in."""
    other = {_code(c): int(v) for c, v in sorted(row.other_amounts.items()) if v}
    return {
        "provider_reference": row.provider_reference,
        "transaction_type": row.transaction_type,
        "kind": row.kind.value,
        "gateway_transaction_id": row.gateway_first_id,
        "gateway_amount_minor": row.gateway_amount_minor,
        "gateway_currency": _code(row.currency) if row.gateway_amount_minor is not None else "",
        "statement_amount_minor": row.statement_amount_minor,
        "statement_currency": (
            _code(row.statement_amount_currency) if row.statement_amount_minor is not None else ""
        ),
        "divergent_amount_minor": row.divergent_amount_minor,
        "currency": _code(row.currency),
        "other_amounts_minor": json.dumps(other, separators=(",", ":")) if other else "",
        "gateway_status": row.gateway_status,
        "statement_status": row.statement_status,
    }


@dataclass
class CurrencyCount:
    """The ticket's rows whose key is in one currency, and the divergent amount in it (an
    extra copy of a duplicate in this currency adds its amount, not a row)."""

    rows: int = 0
    divergent_amount_minor: int = 0


@dataclass
class TicketCounts:
    """Figures of a ticket CSV (never its rows): counts, and amounts per currency."""

    rows: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_currency: dict[str, CurrencyCount] = field(default_factory=dict)

    def add(self, row: DivergenceRow) -> None:
        self.rows += 1
        self.by_kind[row.kind.value] = self.by_kind.get(row.kind.value, 0) + 1
        own = self.by_currency.setdefault(_code(row.currency), CurrencyCount())
        own.rows += 1
        own.divergent_amount_minor += row.divergent_amount_minor
        for code, amount in row.other_amounts.items():
            self.by_currency.setdefault(_code(code), CurrencyCount()).divergent_amount_minor += int(amount)

    def currency_dict(self) -> dict[str, dict[str, Any]]:
        """``{code: {"exponent", "rows", "divergent_amount_minor"}}``, own minor units."""
        return {
            code: {
                "exponent": exponent(code),
                "rows": c.rows,
                "divergent_amount_minor": c.divergent_amount_minor,
            }
            for code, c in sorted(self.by_currency.items())
        }

    def currency_text(self, *, locale: str | None = None) -> str:
        """``BRL: 4 linhas, R$ 12,50; USD: 1 linha, USD 5,00``: never one sum (in the
        language in force)."""
        return "; ".join(
            ngettext(
                "%(currency)s: %(num)s row, %(amount)s",
                "%(currency)s: %(num)s rows, %(amount)s",
                c.rows,
                currency=code or "?",
                amount=format_money(c.divergent_amount_minor, code or None, locale=locale),
            )
            for code, c in sorted(self.by_currency.items())
        )


def write_ticket_csv(rows: Iterable[DivergenceRow], out: IO[str]) -> TicketCounts:
    """Stream ``rows`` to ``out`` as the ticket CSV (header first); return the counts. Text
    from the data that a spreadsheet would run as a formula is kept as text (:mod:`spreadsheet`)."""
    writer = csv.DictWriter(out, fieldnames=TICKET_FIELDS, lineterminator="\n")
    writer.writeheader()
    counts = TicketCounts()
    for row in rows:
        writer.writerow(safe_row(ticket_row(row)))
        counts.add(row)
    return counts


class PspTicketNumberError(ReconError):
    """A PSP ticket number that cannot be recorded: empty when one is required, too long, or
    with characters a ticket number does not have."""


#: the longest ticket number kept (PSP case numbers are short identifiers)
TICKET_NUMBER_MAX_LENGTH = 64
#: letters and digits, and inside the number ``-``, ``_``, ``.``, ``/``, ``#``, ``:`` or a
#: single space (``STRIPE-8812``, ``ADY 2026/118``, ``#55102``); at least one digit
TICKET_NUMBER_PATTERN = r"^(?=.*[0-9])[A-Za-z0-9#][A-Za-z0-9_./#:-]*( [A-Za-z0-9_./#:-]+)*$"
_TICKET_NUMBER_RE = re.compile(TICKET_NUMBER_PATTERN)


def check_ticket_number(value: Any, *, required: bool = False) -> str | None:
    """The PSP's ticket number as given, surrounding blanks removed.

    :param value: what on-call typed (the HITL entry, the dashboard form, a templated param).
    :param required: an empty value is an error (someone is recording a number); otherwise
        it means "not opened yet" and ``None`` is returned.
    :raises PspTicketNumberError: the value is not a ticket number; the message says why, in
        the language in force (people read it in the form that refused it).
    """
    text = "" if value is None else str(value).strip()
    if text in {"", "None"}:
        if required:
            raise PspTicketNumberError(_("the PSP ticket number is empty; type the number the PSP gave"))
        return None
    shown = repr(text[:40] + ("..." if len(text) > 40 else ""))
    if len(text) > TICKET_NUMBER_MAX_LENGTH or not text.isprintable():
        raise PspTicketNumberError(
            _(
                "PSP ticket number %(number)s must be one line of at most %(max)s characters",
                number=shown,
                max=TICKET_NUMBER_MAX_LENGTH,
            )
        )
    if not _TICKET_NUMBER_RE.match(text):
        raise PspTicketNumberError(
            _(
                "PSP ticket number %(number)s is not a ticket number: use letters and digits (at least "
                "one digit), with - _ . / # : or single spaces inside (e.g. STRIPE-8812)",
                number=shown,
            )
        )
    return text


__all__ = [
    "EXTERNAL_KINDS",
    "TICKET_FIELDS",
    "TICKET_NUMBER_MAX_LENGTH",
    "TICKET_NUMBER_PATTERN",
    "CurrencyCount",
    "PspTicketNumberError",
    "TicketCounts",
    "check_ticket_number",
    "parse_ticket_kinds",
    "ticket_row",
    "write_ticket_csv",
]
