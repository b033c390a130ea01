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


#: the one identifier map of the package's SQL: placeholder -> (mapping section, column).
#: Every query builder formats its template with :func:`sql_names`; a placeholder names its
#: table by prefix (``i_`` intents, ``t_`` transactions, ``s_`` statement lines, ``r_``
#: reconciliation logs, ``led_`` ledger) and the tables by their section's short name.
SQL_COLUMNS: dict[str, tuple[str, str]] = {
    "i_id": ("intents", "id"),
    "i_provider": ("intents", "provider"),
    "i_ref": ("intents", "provider_reference"),
    "t_id": ("transactions", "id"),
    "t_intent": ("transactions", "intent_id"),
    "t_type": ("transactions", "transaction_type"),
    "t_status": ("transactions", "status"),
    "t_amount": ("transactions", "amount_minor"),
    "t_currency": ("transactions", "currency"),
    "t_created": ("transactions", "created_at"),
    "t_processed": ("transactions", "processed_at"),
    "s_id": ("statements", "id"),
    "s_psp": ("statements", "psp"),
    "s_ref": ("statements", "provider_reference"),
    "s_type": ("statements", "transaction_type"),
    "s_status": ("statements", "status"),
    "s_amount": ("statements", "amount_minor"),
    "s_currency": ("statements", "currency"),
    "s_occurred": ("statements", "occurred_at"),
    "r_id": ("reconciliation_logs", "id"),
    "r_psp": ("reconciliation_logs", "psp"),
    "r_cycle_start": ("reconciliation_logs", "cycle_start"),
    "r_cycle_end": ("reconciliation_logs", "cycle_end"),
    "r_status": ("reconciliation_logs", "status"),
    "r_amount": ("reconciliation_logs", "divergent_amount_minor"),
    "r_count": ("reconciliation_logs", "divergent_count"),
    "r_notes": ("reconciliation_logs", "notes"),
    "r_created": ("reconciliation_logs", "created_at"),
    "led_psp": ("ledger", "psp"),
    "led_status": ("ledger", "status"),
    "led_amount": ("ledger", "amount_minor"),
    "led_currency": ("ledger", "currency"),
    "led_occurred": ("ledger", "occurred_at"),
}

#: placeholder -> mapping section of the tables
SQL_TABLES = {
    "intents": "intents",
    "transactions": "transactions",
    "statements": "statements",
    "logs": "reconciliation_logs",
    "ledger": "ledger",
}


def sql_names(m: TableMapping) -> dict[str, sql.Composable]:
    """The identifiers of the package's SQL for the table mapping ``m`` (:data:`SQL_TABLES`,
    :data:`SQL_COLUMNS`): every builder formats its template with them."""
    names: dict[str, sql.Composable] = {
        key: getattr(m, section).table.ident for key, section in SQL_TABLES.items()
    }
    names.update({key: getattr(m, section).col(column) for key, (section, column) in SQL_COLUMNS.items()})
    return names
