"""FX rates in ``recon.fx_rates`` (connection ``billing_gateway_db``, DESIGN 3a).

- :meth:`FxRatesHook.load` — a rates file (``airflow-recon fx-rates load``): all of it in
  one transaction, or nothing; a ``(currency, valid_from)`` already in the table refuses the
  whole file, naming the file line and the stored row.
- :meth:`FxRatesHook.upsert_daily` — what the daily ``billing_gateway_fx_rates`` DAG fetched:
  a rate already stored for its ``(currency, valid_from)`` is kept, so a re-run neither fails
  nor duplicates (a different rate for a stored key is kept out and reported, never
  overwritten: figures already reported with the stored rate stay reproducible).
- :meth:`FxRatesHook.rates_in_force` — the rate of each currency at a moment.
- :func:`rates_in_force_on` (from :mod:`.gateway_reader`) — the same on a connection another
  hook already holds (the summary and the dry run read their rates in the transaction of
  their figures).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from airflow_recon_provider.hooks._postgres import ReconPostgresHook
from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID
from airflow_recon_provider.reconciliation import fx_queries
from airflow_recon_provider.reconciliation.fx import (
    FxFileError,
    FxTableMissingError,
    RatesFile,
    iso_utc,
    table_conflict_error,
)
from airflow_recon_provider.reconciliation.money import FxRate, check_currency


@dataclass(frozen=True)
class DailyUpsert:
    """What :meth:`FxRatesHook.upsert_daily` did with each rate."""

    inserted: tuple[FxRate, ...] = ()
    unchanged: tuple[FxRate, ...] = ()
    #: ``(the rate fetched, the rate stored)`` for a key stored with another rate or source
    conflicting: tuple[tuple[FxRate, FxRate], ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "inserted": [{"currency": r.currency, **r.as_dict()} for r in self.inserted],
            "unchanged": [{"currency": r.currency, **r.as_dict()} for r in self.unchanged],
            "conflicting": [
                {"currency": new.currency, "fetched": new.as_dict(), "stored": old.as_dict()}
                for new, old in self.conflicting
            ],
        }


class FxRatesHook(ReconPostgresHook):
    """Read and write ``recon.fx_rates`` on the billing gateway database.

    :param billing_gateway_conn_id: Airflow connection of the gateway database (where the
        ``recon`` schema lives).
    :param config: reconciliation configuration (its ``reporting_currency``).
    """

    conn_name_attr = "billing_gateway_conn_id"
    default_conn_name = BILLING_GATEWAY_CONN_ID
    conn_type = "billing_gateway"
    hook_name = "Billing Gateway DB (PostgreSQL)"

    def __init__(self, *args: Any, billing_gateway_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def _check_table(self, conn: Any) -> None:
        if not conn.execute(fx_queries.table_exists_query()).fetchone()[0]:
            raise FxTableMissingError(
                f"recon.fx_rates does not exist in the database of connection "
                f"{self.billing_gateway_conn_id!r}; run `airflow-recon migrate` first (schema migration 6)"
            )

    def load(self, rates: RatesFile | Iterable[FxRate]) -> dict[str, int]:
        """Insert every rate of ``rates`` in one transaction; returns the count per currency.

        :raises FxFileError: a ``(currency, valid_from)`` of ``rates`` is already in the table
            (the message names the file line and the stored row); nothing is written.
        :raises FxTableMissingError: the ``recon`` schema is not migrated.
        """
        import psycopg

        rates_file = rates if isinstance(rates, RatesFile) else RatesFile.of(rates)
        if not len(rates_file):
            return {}
        with self.connect() as conn:
            self._check_table(conn)
            conn.execute(fx_queries.lock_for_load_query())
            existing = conn.execute(
                fx_queries.existing_keys_query(),
                {
                    "currencies": [r.currency for r in rates_file.rates],
                    "valid_froms": [r.valid_from for r in rates_file.rates],
                },
            ).fetchall()
            conflict = table_conflict_error(rates_file, existing)
            if conflict is not None:
                raise conflict
            try:
                with conn.cursor() as cur, cur.copy(fx_queries.copy_rates_statement()) as copy:
                    for r in rates_file.rates:
                        copy.write_row((r.currency, r.rate, r.valid_from, r.source))
            except psycopg.errors.UniqueViolation:  # only if another writer ignored the lock
                raise FxFileError(
                    f"{rates_file.name}: a rate was stored by someone else while loading; nothing was "
                    "loaded, load the file again to see which line",
                    name=rates_file.name,
                ) from None
        # the caller says what was loaded (the CLI prints JSON on stdout, where Airflow's
        # logging also writes): nothing logged at info level here
        return rates_file.count_by_currency()

    def upsert_daily(self, rates: Iterable[FxRate]) -> DailyUpsert:
        """Insert the rates whose ``(currency, valid_from)`` is not stored yet, in one
        transaction. A stored key is left as it is: identical -> ``unchanged``; another rate
        or source -> ``conflicting`` (logged as a warning, never overwritten)."""
        rates = list(rates)
        inserted: list[FxRate] = []
        unchanged: list[FxRate] = []
        conflicting: list[tuple[FxRate, FxRate]] = []
        if not rates:
            return DailyUpsert()
        RatesFile.of(rates, name="the day's rates")  # a key twice in one set is a caller's bug
        with self.connect() as conn:
            self._check_table(conn)
            conn.execute(fx_queries.lock_for_load_query())
            for rate in rates:
                was_inserted, stored_rate, stored_source = conn.execute(
                    fx_queries.insert_if_absent_query(),
                    {
                        "currency": rate.currency,
                        "rate": rate.rate,
                        "valid_from": rate.valid_from,
                        "source": rate.source,
                    },
                ).fetchone()
                if was_inserted:
                    inserted.append(rate)
                elif Decimal(stored_rate) == rate.rate and stored_source == rate.source:
                    unchanged.append(rate)
                else:
                    stored = FxRate(rate.currency, Decimal(stored_rate), rate.valid_from, stored_source)
                    conflicting.append((rate, stored))
                    self.log.warning(
                        "%s valid from %s is stored with rate %s (%s); the rate fetched now, %s (%s), "
                        "is not stored: rates already used in reports are never overwritten",
                        rate.currency,
                        iso_utc(rate.valid_from),
                        stored.as_dict()["rate"],
                        stored.source,
                        rate.as_dict()["rate"],
                        rate.source,
                    )
        return DailyUpsert(tuple(inserted), tuple(unchanged), tuple(conflicting))

    def rates_in_force(self, currencies: Iterable[str], at: datetime) -> dict[str, FxRate]:
        """``{currency: FxRate}``: for each currency, the row with the greatest
        ``valid_from <= at``; currencies without such a row are left out."""
        if not isinstance(at, datetime) or at.tzinfo is None or at.tzinfo.utcoffset(at) is None:
            raise ValueError(f"at must be a timezone-aware datetime, got {at!r}")
        codes = sorted({check_currency(c) for c in currencies})
        if not codes:
            return {}
        with self.connect(autocommit=True) as conn:
            self._check_table(conn)
            rows = conn.execute(
                fx_queries.rates_in_force_query(), {"currencies": codes, "at": at.astimezone(UTC)}
            ).fetchall()
        return {row[0]: FxRate.from_db(row) for row in rows}
