"""Table and column names of the billing gateway and ledger databases.

Defaults are the runbook's names. Sites with other names configure a mapping;
every name is validated as a plain identifier and reaches SQL only through
``psycopg.sql.Identifier``, never as raw text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.reconciliation.errors import MappingError

if TYPE_CHECKING:
    from psycopg import sql

# fullmatch, not match with "$": "$" also matches before a trailing newline
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def check_identifier(value: str, *, what: str) -> str:
    if not isinstance(value, str) or not _IDENT.fullmatch(value):
        raise MappingError(
            f"{what} {value!r} is not a plain SQL identifier "
            "(letters, digits and underscores, not starting with a digit, at most 63 characters)"
        )
    return value


@dataclass(frozen=True)
class TableRef:
    """A possibly schema-qualified table name, e.g. ``ledger.transactions``."""

    name: str
    schema: str | None = None

    def __post_init__(self) -> None:
        check_identifier(self.name, what="table name")
        if self.schema is not None:
            check_identifier(self.schema, what="schema name")

    @classmethod
    def parse(cls, value: str) -> TableRef:
        if not isinstance(value, str):
            raise MappingError(f"table {value!r} must be a string like 'schema.table' or 'table'")
        parts = value.split(".")
        if len(parts) == 1:
            return cls(parts[0])
        if len(parts) == 2:
            return cls(parts[1], parts[0])
        raise MappingError(f"table {value!r} must be 'table' or 'schema.table'")

    @property
    def ident(self) -> sql.Identifier:
        # psycopg only when SQL is composed: the DAG processor loads this module through the
        # configuration and never builds a query
        from psycopg import sql

        return sql.Identifier(self.schema, self.name) if self.schema else sql.Identifier(self.name)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True)
class _Columns:
    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name != "table":
                check_identifier(getattr(self, f.name), what=f"column {f.name}")

    def col(self, name: str) -> sql.Identifier:
        from psycopg import sql

        return sql.Identifier(getattr(self, name))


@dataclass(frozen=True)
class IntentsTable(_Columns):
    table: TableRef = TableRef("payment_intents")
    id: str = "id"
    provider: str = "provider"
    provider_reference: str = "provider_reference"


@dataclass(frozen=True)
class TransactionsTable(_Columns):
    table: TableRef = TableRef("payment_transactions")
    id: str = "id"
    intent_id: str = "intent_id"
    transaction_type: str = "transaction_type"
    status: str = "status"
    amount_minor: str = "amount_minor"
    currency: str = "currency"
    created_at: str = "created_at"
    processed_at: str = "processed_at"


@dataclass(frozen=True)
class StatementTable(_Columns):
    table: TableRef = TableRef("psp_statement_lines")
    id: str = "id"
    psp: str = "psp"
    provider_reference: str = "provider_reference"
    transaction_type: str = "transaction_type"
    status: str = "status"
    amount_minor: str = "amount_minor"
    currency: str = "currency"
    occurred_at: str = "occurred_at"
    statement_id: str = "statement_id"


@dataclass(frozen=True)
class ReconciliationLogTable(_Columns):
    table: TableRef = TableRef("payment_reconciliation_logs")
    id: str = "id"
    psp: str = "psp"
    cycle_start: str = "cycle_start"
    cycle_end: str = "cycle_end"
    status: str = "status"
    divergent_amount_minor: str = "divergent_amount_minor"
    divergent_count: str = "divergent_count"
    notes: str = "notes"
    created_at: str = "created_at"


@dataclass(frozen=True)
class LedgerTable(_Columns):
    table: TableRef = TableRef("transactions", "ledger")
    id: str = "id"
    psp: str = "psp"
    provider_reference: str = "provider_reference"
    status: str = "status"
    amount_minor: str = "amount_minor"
    #: the currency of the entry's amount (ISO 4217): the ledger is compared with the PSP
    #: statements per status and currency, never adding amounts of two currencies
    currency: str = "currency"
    occurred_at: str = "occurred_at"


_SECTIONS = {
    "payment_intents": IntentsTable,
    "payment_transactions": TransactionsTable,
    "psp_statement_lines": StatementTable,
    "payment_reconciliation_logs": ReconciliationLogTable,
    "ledger_transactions": LedgerTable,
}


@dataclass(frozen=True)
class TableMapping:
    """Where each of the runbook's tables lives, and what its columns are called."""

    intents: IntentsTable = field(default_factory=IntentsTable)
    transactions: TransactionsTable = field(default_factory=TransactionsTable)
    statements: StatementTable = field(default_factory=StatementTable)
    reconciliation_logs: ReconciliationLogTable = field(default_factory=ReconciliationLogTable)
    ledger: LedgerTable = field(default_factory=LedgerTable)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TableMapping:
        """Build from ``{"payment_transactions": {"table": "public.tx", "amount_minor": "amt"}}``."""
        data = data or {}
        if not isinstance(data, dict):
            raise MappingError(f"the table mapping must be an object of sections, got {data!r}")
        unknown = set(data) - set(_SECTIONS)
        if unknown:
            raise MappingError(
                f"unknown mapping section(s) {sorted(unknown)}; expected any of {sorted(_SECTIONS)}"
            )
        built: dict[str, Any] = {}
        attr_of = dict(
            zip(
                _SECTIONS,
                ("intents", "transactions", "statements", "reconciliation_logs", "ledger"),
                strict=True,
            )
        )
        for section, klass in _SECTIONS.items():
            raw = data.get(section) or {}
            if not isinstance(raw, dict):
                raise MappingError(f"mapping section {section!r} must be an object, got {raw!r}")
            values = dict(raw)
            if "table" in values:
                values["table"] = TableRef.parse(values["table"])
            allowed = {f.name for f in fields(klass)}
            bad = set(values) - allowed
            if bad:
                raise MappingError(f"unknown column key(s) {sorted(bad)} in mapping section {section!r}")
            built[attr_of[section]] = klass(**values)
        return cls(**built)
