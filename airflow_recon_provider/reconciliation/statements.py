"""PSP statements: the strict validation of what a PSP's statements API returns.

Runbook, Contexto: the hourly reconciliation fetches each PSP's statement for the
cycle (task ``fetch_psp_statements``) before matching it against the gateway
(task ``match_transactions``). A statement line that is not exactly what the
matching needs is refused here, with a message that names the line, so that a
malformed statement never reaches ``psp_statement_lines``.

Pure domain: no Airflow, no HTTP. The hook hands every decoded JSON page to
:func:`parse_statement_page` and joins the pages with :func:`assemble_statement`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_recon_provider.reconciliation.errors import (
    ReconError,
    ServiceRequestError,
    ServiceUnavailableError,
    WindowError,
)
from airflow_recon_provider.reconciliation.window import Window, parse_timestamp

#: The runbook's transaction types (``payment_transactions.transaction_type``).
TRANSACTION_TYPES: tuple[str, ...] = ("authorization", "capture", "settlement", "refund")

#: The keys every statement line must carry; other keys are ignored.
LINE_FIELDS: tuple[str, ...] = (
    "provider_reference",
    "transaction_type",
    "status",
    "amount_minor",
    "currency",
    "occurred_at",
)

_CURRENCY = re.compile(r"^[A-Za-z]{3}$")
# amounts are SQL bigint
_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1


class StatementFormatError(ReconError):
    """A PSP statement is malformed: nothing of it is written."""


class PspUnavailableError(ServiceUnavailableError):
    """The PSP API could not answer: HTTP 5xx or 429, timeout, or connection refused."""


class PspRequestError(ServiceRequestError):
    """The PSP API refused the request (HTTP 4xx other than 429): a credential or
    configuration problem that retrying does not fix."""


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One line of a PSP statement, in the gateway's vocabulary of types.

    ``status`` is the PSP's own vocabulary (the per-PSP status mapping is applied by
    the classification, not here); ``currency`` is upper-case; ``occurred_at`` is UTC.
    """

    provider_reference: str
    transaction_type: str
    status: str
    amount_minor: int
    currency: str
    occurred_at: datetime


@dataclass(frozen=True)
class StatementPage:
    """One page of the statements API."""

    statement_id: str
    lines: tuple[StatementLine, ...]
    next_page: str | None = None


@dataclass(frozen=True)
class PspStatement:
    """The statement of one PSP for one reconciliation cycle (all pages joined)."""

    psp: str
    cycle: Window
    statement_id: str
    lines: tuple[StatementLine, ...]
    pages: int = 1

    @property
    def amount_minor(self) -> int:
        """Sum of the lines' amounts as stated (for logs; decisions use the classification)."""
        return sum(line.amount_minor for line in self.lines)

    def __len__(self) -> int:
        return len(self.lines)


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "decimal number", str: "text"}.get(type(value))
    if value is None:
        return "nothing (null)"
    return f"{value!r} ({kind or type(value).__name__})"


def _text(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise StatementFormatError(f"{where}: {key} must be a non-empty text, got {_describe(value)}")
    if "\x00" in value:
        raise StatementFormatError(f"{where}: {key} contains a NUL character")
    return value


def parse_line(item: Any, *, cycle: Window, where: str) -> StatementLine:
    """Validate one statement line (a decoded JSON object).

    :param item: the decoded JSON value of the line.
    :param cycle: the reconciliation cycle; ``occurred_at`` must fall inside it.
    :param where: how error messages name the line, e.g. ``"PSP stripe, line 3"``.
    """
    if not isinstance(item, dict):
        raise StatementFormatError(f"{where}: a statement line must be a JSON object, got {_describe(item)}")
    missing = [key for key in LINE_FIELDS if key not in item]
    reference = item.get("provider_reference")
    if isinstance(reference, str) and reference.strip():
        where = f"{where} (provider_reference {reference!r})"
    if missing:
        raise StatementFormatError(f"{where}: missing field(s) {', '.join(missing)}")

    provider_reference = _text(item, "provider_reference", where)
    transaction_type = _text(item, "transaction_type", where)
    if transaction_type not in TRANSACTION_TYPES:
        raise StatementFormatError(
            f"{where}: transaction_type {transaction_type!r} is not one of {', '.join(TRANSACTION_TYPES)}"
        )
    status = _text(item, "status", where)

    amount = item["amount_minor"]
    # bool is an int subclass in Python; a float or a numeric text is refused because
    # an amount must never go through a binary fraction or a guess about its unit.
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise StatementFormatError(
            f"{where}: amount_minor must be a whole number of minor units (e.g. 1050 for 10.50), "
            f"got {_describe(amount)}"
        )
    if not _BIGINT_MIN <= amount <= _BIGINT_MAX:
        raise StatementFormatError(f"{where}: amount_minor {amount} is out of the bigint range")

    currency = item["currency"]
    # fullmatch: "$" of match() would accept "BRL\n", a false currency_mismatch later
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise StatementFormatError(
            f"{where}: currency must be a 3-letter ISO 4217 code such as BRL, got {_describe(currency)}"
        )

    occurred_raw = item["occurred_at"]
    if not isinstance(occurred_raw, str):
        raise StatementFormatError(
            f"{where}: occurred_at must be an ISO 8601 text with an offset, got {_describe(occurred_raw)}"
        )
    try:
        occurred_at = parse_timestamp(occurred_raw, name="occurred_at")
    except WindowError as exc:
        raise StatementFormatError(f"{where}: {exc}") from None
    if not cycle.contains(occurred_at):
        raise StatementFormatError(
            f"{where}: occurred_at {occurred_at.isoformat()} is outside the reconciliation cycle {cycle}"
        )

    return StatementLine(
        provider_reference=provider_reference,
        transaction_type=transaction_type,
        status=status,
        amount_minor=amount,
        currency=currency.upper(),
        occurred_at=occurred_at,
    )


def parse_statement_page(
    payload: Any, *, psp: str, cycle: Window, page: int = 1, first_line: int = 1
) -> StatementPage:
    """Validate one decoded page ``{"statement_id", "lines": [...], "next_page"?}``.

    :param payload: the decoded JSON document.
    :param psp: the PSP, for messages.
    :param cycle: the reconciliation cycle every line must fall in.
    :param page: 1-based page number, for messages.
    :param first_line: statement-wide 1-based number of this page's first line, so that
        messages name a line the same way whatever page it is on.
    """
    where = f"PSP {psp} statement, page {page}"
    if not isinstance(payload, dict):
        raise StatementFormatError(f"{where}: expected a JSON object, got {_describe(payload)}")
    statement_id = payload.get("statement_id")
    if not isinstance(statement_id, str) or not statement_id.strip():
        raise StatementFormatError(
            f"{where}: statement_id must be a non-empty text, got {_describe(statement_id)}"
        )
    if "\x00" in statement_id:
        raise StatementFormatError(f"{where}: statement_id contains a NUL character")
    items = payload.get("lines")
    if not isinstance(items, list):
        raise StatementFormatError(f"{where}: lines must be a JSON list, got {_describe(items)}")
    next_page = payload.get("next_page")
    if next_page is not None and (not isinstance(next_page, str) or not next_page.strip()):
        raise StatementFormatError(
            f"{where}: next_page must be a non-empty text or absent, got {_describe(next_page)}"
        )
    lines = tuple(
        parse_line(item, cycle=cycle, where=f"PSP {psp} statement {statement_id}, line {first_line + n}")
        for n, item in enumerate(items)
    )
    return StatementPage(statement_id=statement_id, lines=lines, next_page=next_page)


def assemble_statement(psp: str, cycle: Window, pages: Iterable[StatementPage]) -> PspStatement:
    """Join validated pages into one statement; every page must be of the same statement."""
    pages = list(pages)
    if not pages:
        raise StatementFormatError(f"PSP {psp} returned no statement page for cycle {cycle}")
    statement_id = pages[0].statement_id
    for number, page in enumerate(pages[1:], start=2):
        if page.statement_id != statement_id:
            raise StatementFormatError(
                f"PSP {psp} statement changed while it was being read: page 1 is statement "
                f"{statement_id!r}, page {number} is {page.statement_id!r}; fetch the cycle again"
            )
    lines = tuple(line for page in pages for line in page.lines)
    return PspStatement(psp=psp, cycle=cycle, statement_id=statement_id, lines=lines, pages=len(pages))


__all__ = [
    "LINE_FIELDS",
    "TRANSACTION_TYPES",
    "PspRequestError",
    "PspStatement",
    "PspUnavailableError",
    "StatementFormatError",
    "StatementLine",
    "StatementPage",
    "assemble_statement",
    "parse_line",
    "parse_statement_page",
]
