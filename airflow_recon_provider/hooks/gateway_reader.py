"""Reading divergence from the billing gateway's database, without Airflow: PSPs, the
divergence report (streamed) and the summary, from the stored cycles where they are exact and
live otherwise. :class:`~airflow_recon_provider.hooks.billing_gateway.BillingGatewayHook`
is this reader on an Airflow connection; :class:`DirectGatewayReader` is it on libpq keyword
arguments, what ``airflow-recon report``/``summary`` use when the connection is an
``AIRFLOW_CONN_*`` variable (no Airflow import: the CLI starts in a fraction of a second).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from airflow_recon_provider.hooks import _key_parts
from airflow_recon_provider.hooks._pg_session import ReconSession
from airflow_recon_provider.reconciliation import cycle_store, fx_queries, queries
from airflow_recon_provider.reconciliation.config import PspConfig, ReconConfig, check_psp_name
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS, DivergenceKind
from airflow_recon_provider.reconciliation.money import FxRate
from airflow_recon_provider.reconciliation.report import (
    DivergenceRow,
    DivergenceSummary,
    render_rows,
    summary_from_results,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

    from airflow_recon_provider.reconciliation.window import Window


class GatewayReader(ReconSession):
    """Divergence of the gateway's tables against the PSP statements (DESIGN section 3).

    Needs ``config``, ``use_cycle_store`` and a connection source (:class:`ReconSession`).
    """

    #: rows received per chunk while a report streams
    fetch_size = 5000
    #: rows read by a live classification that make one more connection worth opening
    live_rows_per_connection = _key_parts.ROWS_PER_CONNECTION
    use_cycle_store: bool = True

    # -- PSPs --------------------------------------------------------------------------
    def known_psps(self, limit: int = 1000) -> list[str]:
        """Providers present in ``payment_intents`` (skip scan over the provider index)."""
        with self.connect(autocommit=True) as conn:
            rows = conn.execute(queries.distinct_psps_query(self.config.mapping), {"limit": limit})
            return [r[0] for r in rows]

    def resolve_psp(self, psp: str) -> PspConfig:
        """The PSP's configuration, or :class:`UnknownPspError` (DESIGN section 3)."""
        check_psp_name(psp)
        if self.config.psps:
            return self.config.resolve_psp(psp)
        with self.connect(autocommit=True) as conn:
            row = conn.execute(queries.psp_exists_query(self.config.mapping), {"psp": psp}).fetchone()
        if row and row[0]:
            return self.config.psp(psp)
        return self.config.resolve_psp(psp, set(self.known_psps(limit=50)))

    def _params(self, psp: PspConfig, window: Window, kinds: tuple[DivergenceKind, ...]) -> dict[str, Any]:
        return queries.ClassificationParams(
            psp=psp.name,
            window=window,
            grace=self.config.match_grace,
            status_mapping=psp.status_mapping,
            kinds=kinds,
        ).as_params()

    # -- divergence ----------------------------------------------------------------------
    def iter_divergences(
        self, psp: str, window: Window, kinds: tuple[DivergenceKind, ...] = ALL_KINDS
    ) -> Iterator[DivergenceRow]:
        """Divergent keys, streamed in chunks of :attr:`fetch_size`: memory follows the
        batch size, not the table or the window. Clean stored cycles of the window are
        reused (reconciliation/cycle_store.py); the rest is classified live."""
        with self._report(psp, window, kinds) as report:
            for record in report.records(self.fetch_size):
                yield DivergenceRow.from_db(record)

    def write_report(
        self,
        psp: str,
        window: Window,
        fmt: str,
        out: BinaryIO,
        *,
        kinds: tuple[DivergenceKind, ...] = ALL_KINDS,
    ) -> int:
        """The report of :meth:`iter_divergences` as JSON lines or CSV (``fmt``), UTF-8 bytes
        written to ``out``; the number of rows. The server writes the lines (``COPY ... TO
        STDOUT``, byte for byte what :func:`~airflow_recon_provider.reconciliation.report.render_rows`
        writes) and they are copied through; a window split over several connections is
        merged and rendered here. Nothing is written when the PSP or the window is refused."""
        if fmt not in queries.COPY_FORMATS:
            raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(queries.COPY_FORMATS)}")
        with self._report(psp, window, kinds) as report:
            if report.parts is None:
                return report.copy(fmt, out)
            if fmt == "jsonl":
                # the parts' lines are built by the server; only the merge runs here
                return report.parts.write_merged_lines(
                    queries.report_json_lines_query(report.statement), report.params, out, self.fetch_size
                )
            text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
            try:
                rows = (DivergenceRow.from_db(r) for r in report.records(self.fetch_size))
                return render_rows(rows, text, fmt)
            finally:
                text.flush()
                text.detach()

    @contextmanager
    def _report(self, psp: str, window: Window, kinds: tuple[DivergenceKind, ...]) -> Iterator[_Report]:
        """Where the report of ``psp`` and ``window`` comes from, in one REPEATABLE READ
        snapshot: the clean stored cycles and the rest live, a one-shot live statement, or a
        long window's live classification split over several connections."""
        psp_cfg = self.resolve_psp(psp)
        params = self._params(psp_cfg, window, kinds)
        mapping = self.config.mapping
        with self.connect() as conn:
            conn.isolation_level = _repeatable_read()
            with conn.transaction():
                plan = self._store_plan(conn, window, params)
                if plan is None:
                    self._tune_for_classification(conn, window)
                    count = self._live_connections(conn, window, params)
                    if count > 1:
                        with self._key_parts(conn, window, count) as parts:
                            statement = queries.divergence_report_query(mapping, partitioned=True)
                            yield _Report(conn, statement, params, parts)
                        return
                    statement = queries.divergence_report_query(mapping)
                else:
                    self._tune_for_store(conn, plan)
                    params.update(cycle_store.plan_params(plan, window, self.config.match_grace))
                    statement = cycle_store.stored_report_query(mapping)
                yield _Report(conn, statement, params, None)

    def summary(
        self,
        psp: str,
        window: Window,
        *,
        kinds: tuple[DivergenceKind, ...] = ALL_KINDS,
        reference: datetime | None = None,
    ) -> DivergenceSummary:
        """Summary figures (DESIGN section 3) and lag at ``reference`` (default: window end);
        from the clean stored cycles of the window where there are some."""
        psp_cfg = self.resolve_psp(psp)
        params = self._params(psp_cfg, window, kinds)
        reference = reference or window.end
        mapping = self.config.mapping
        with self.connect() as conn:
            conn.isolation_level = _repeatable_read()
            with conn.transaction():
                plan = self._store_plan(conn, window, params)
                if plan is None:
                    self._tune_for_classification(conn, window)
                    totals = conn.execute(queries.gateway_totals_query(mapping), params).fetchall()
                    count = self._live_connections(conn, window, params)
                    if count > 1:
                        with self._key_parts(conn, window, count) as parts:
                            statement = queries.divergence_by_kind_query(mapping, partitioned=True)
                            by_kind = queries.merge_by_kind(parts.fetch_all(statement, params))
                    else:
                        by_kind = conn.execute(queries.divergence_by_kind_query(mapping), params).fetchall()
                else:
                    self._tune_for_store(conn, plan)
                    params.update(cycle_store.plan_params(plan, window, self.config.match_grace))
                    totals = conn.execute(cycle_store.stored_totals_query(mapping), params).fetchall()
                    by_kind = conn.execute(cycle_store.stored_by_kind_query(mapping), params).fetchall()
                last_end = conn.execute(
                    queries.latest_success_query(mapping),
                    {"psp": psp_cfg.name, "reference": reference},
                ).fetchone()[0]
                rates = rates_in_force_on(
                    conn,
                    queries.summary_currencies(totals, by_kind),
                    window.end,
                    reporting=self.config.reporting_currency,
                )
        return summary_from_results(
            psp=psp_cfg.name,
            window=window,
            totals=totals,
            by_kind_rows=by_kind,
            last_success_end=last_end,
            reference=reference,
            thresholds=self.config.thresholds.for_psp(psp_cfg.name),
            reporting_currency=self.config.reporting_currency,
            fx_rates=rates,
        )

    # -- a long window classified live by several connections (hooks/_key_parts.py) ------------
    def _live_connections(self, conn: Any, window: Window, params: dict[str, Any]) -> int:
        """How many connections classify ``window`` live: by the planner's estimate of the rows
        read (one more per :attr:`live_rows_per_connection`), at most
        ``ReconConfig.live_connections``; an hourly cycle's few rows keep one."""
        limit = self.config.live_connections
        if limit <= 1:
            return 1
        rows = _key_parts.estimated_rows(conn, queries.live_rows_estimate_query(self.config.mapping), params)
        return _key_parts.connections_for(rows, limit, per_connection=self.live_rows_per_connection)

    def _key_parts(self, conn: Any, window: Window, count: int) -> _key_parts.KeyParts:
        def tune(extra: Any) -> None:
            self._tune_for_classification(extra, window)

        return _key_parts.KeyParts(conn, count, self.connect, tune)

    # -- stored per-cycle classification (reconciliation/cycle_store.py) --------------------
    def _store_plan(self, conn: Any, window: Window, params: dict[str, Any]) -> cycle_store.StorePlan | None:
        """The clean stored cycles of ``window`` and its live segments; ``None`` when the
        store cannot answer (not installed for this table mapping, no clean cycle inside)."""
        if not self.use_cycle_store:
            return None
        fingerprint = cycle_store.mapping_fingerprint(self.config.mapping)
        installed = conn.execute(cycle_store.store_ready_query()).fetchone()[0]
        if installed != fingerprint:
            return None
        params.update(
            fingerprint=fingerprint, grace_seconds=cycle_store.grace_seconds(self.config.match_grace)
        )
        clean = [r[0] for r in conn.execute(cycle_store.clean_cycles_query(), params)]
        plan = cycle_store.plan_window(window, clean)
        if not plan.usable:
            return None
        probe = {**params, **cycle_store.plan_params(plan, window, self.config.match_grace)}
        touched = conn.execute(cycle_store.touched_hours_query(), probe).fetchone()[0]
        return plan if cycle_store.worth_using(plan, window, touched) else None

    def _tune_for_store(self, conn: Any, plan: cycle_store.StorePlan) -> None:
        # the stored path reads small ranges and single keys through indexes
        # (cycle_store.store_settings says why each setting)
        conn.execute("SELECT set_config('work_mem', %s, true)", (self.config.statement_work_mem,))
        for name, value in cycle_store.store_settings(plan):
            conn.execute("SELECT set_config(%s, %s, true)", (name, value))


class _Report:
    """One report's statement on its connection (or on its key parts' connections)."""

    def __init__(
        self,
        conn: psycopg.Connection,
        statement: sql.Composable,
        params: dict[str, Any],
        parts: _key_parts.KeyParts | None,
    ) -> None:
        self.conn, self.statement, self.params, self.parts = conn, statement, params, parts

    def records(self, fetch_size: int) -> Iterator[Any]:
        """The report's records in its order, a batch of ``fetch_size`` at a time."""
        if self.parts is not None:
            yield from self.parts.stream_merged(self.statement, self.params, fetch_size)
            return
        # chunks over the normal protocol (libpq 17+), not a named cursor: a DECLAREd cursor
        # is planned for its first rows and never in parallel
        with self.conn.cursor() as cur:
            yield from cur.stream(self.statement, self.params, size=fetch_size)

    def copy(self, fmt: str, out: BinaryIO) -> int:
        """The report's lines written by the server to ``out``; the number of rows."""
        self.conn.execute("SELECT set_config('client_encoding', 'UTF8', true)")
        with self.conn.cursor() as cur:
            with cur.copy(queries.report_copy_query(self.statement, fmt), self.params) as copy:
                for data in copy:
                    out.write(data)
            return cur.rowcount


def _repeatable_read() -> Any:
    # marks, stored cycles and the tables are read in one snapshot (cycle_store docstring)
    import psycopg

    return psycopg.IsolationLevel.REPEATABLE_READ


class DirectGatewayReader(GatewayReader):
    """:class:`GatewayReader` on libpq keyword arguments (see :mod:`.env_connections`).

    :param conn_id: the connection's id, named in errors.
    :param connect_kwargs: ``psycopg.connect`` keyword arguments (host, port, user, ...).
    :param config: reconciliation configuration.
    :param use_cycle_store: as :class:`BillingGatewayHook`'s.
    """

    def __init__(
        self,
        *,
        conn_id: str,
        connect_kwargs: Mapping[str, Any],
        config: ReconConfig,
        use_cycle_store: bool = True,
    ) -> None:
        self._conn_id = conn_id
        self._connect_kwargs = dict(connect_kwargs)
        self.config = config
        self.use_cycle_store = use_cycle_store

    @property
    def conn_id_for_errors(self) -> str:
        return self._conn_id

    def _open_connection(self) -> psycopg.Connection:
        import psycopg

        return psycopg.connect(**self._connect_kwargs)


def rates_in_force_on(
    conn: Any, currencies: Iterable[str | None], at: datetime, *, reporting: str
) -> list[FxRate]:
    """The ``recon.fx_rates`` rows in force at ``at`` of ``currencies`` other than
    ``reporting``; none when the table is not there (migration 6 not run): every other
    currency is then named as not converted, never taken as zero."""
    wanted = sorted({c for c in currencies if c and c != reporting})
    if not wanted or not conn.execute(fx_queries.table_exists_query()).fetchone()[0]:
        return []
    rows = conn.execute(fx_queries.rates_in_force_query(), {"currencies": wanted, "at": at}).fetchall()
    return [FxRate.from_db(row) for row in rows]


__all__ = ["DirectGatewayReader", "GatewayReader", "rates_in_force_on"]
