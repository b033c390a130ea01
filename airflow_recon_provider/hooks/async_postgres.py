"""Async PostgreSQL access for triggers: psycopg 3 ``AsyncConnection`` built from an
Airflow connection fetched with the Task SDK's async API, so nothing blocks the
triggerer's event loop.

Everything is imported at the top: the triggers import this module in a worker thread
(``triggers/_offloop.py``), so no function below imports anything on the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from airflow_recon_provider.hooks._async_connections import aget_connection
from airflow_recon_provider.hooks._connections import is_missing_connection
from airflow_recon_provider.reconciliation import cycle_store, fx_queries, queries
from airflow_recon_provider.reconciliation.errors import (
    ConnectionMissingError,
    DatabaseUnavailableError,
    MappingError,
)
from airflow_recon_provider.reconciliation.money import FxRate
from airflow_recon_provider.reconciliation.recovery import AlignmentLine, alignment_lines, gap_currencies
from airflow_recon_provider.reconciliation.report import summary_from_results

#: connection extras that are not libpq parameters (same list as the Postgres provider's)
_NOT_LIBPQ = {
    "iam",
    "redshift",
    "redshift-serverless",
    "cursor",
    "cluster-identifier",
    "workgroup-name",
    "aws_conn_id",
    "sqlalchemy_scheme",
    "sqlalchemy_query",
    "azure_conn_id",
}


def conninfo_kwargs(conn: Any, extras: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """libpq keyword arguments of an Airflow connection (host, port, user, password, db, extras).

    :param extras: the connection's extras when already decoded (default: ``extra_dejson``).
    """
    kwargs: dict[str, Any] = {
        "host": conn.host,
        "port": conn.port,
        "user": conn.login,
        "password": conn.password,
        "dbname": conn.schema,
    }
    for key, value in ((conn.extra_dejson if extras is None else extras) or {}).items():
        if key not in _NOT_LIBPQ:
            kwargs[key] = value
    return {k: v for k, v in kwargs.items() if v not in (None, "")}


@asynccontextmanager
async def async_connect(conn_id: str, *, connect_timeout: int = 10) -> AsyncIterator[psycopg.AsyncConnection]:
    """An autocommit ``AsyncConnection`` in UTC to the database of ``conn_id``.

    The connection comes from the Task SDK's ``aget_connection`` (prepared off the loop,
    ``_async_connections``) and its extras from
    ``aextra_dejson`` (the sync ``extra_dejson`` reports the secrets to mask with a blocking
    call to the supervisor).
    """
    try:
        connection = await aget_connection(conn_id)
    except Exception as exc:
        if is_missing_connection(exc):
            raise ConnectionMissingError(f"Airflow connection {conn_id!r} is not defined") from None
        raise
    # a secrets backend may hand back another connection class, without the async accessor
    aextra_dejson = getattr(connection, "aextra_dejson", None)
    extras = await aextra_dejson() if aextra_dejson is not None else None
    try:
        aconn = await psycopg.AsyncConnection.connect(
            **conninfo_kwargs(connection, extras), autocommit=True, connect_timeout=connect_timeout
        )
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DatabaseUnavailableError(
            f"database of connection {conn_id!r} is unreachable: {first}"
        ) from None
    try:
        await aconn.execute("SET TIME ZONE 'UTC'")
        yield aconn
    finally:
        await aconn.close()


async def fetch_summary(
    conn: psycopg.AsyncConnection, config: Any, psp: str, window: Any, reference: Any
) -> Any:
    """The divergence summary of ``psp`` over ``window`` with lag at ``reference``: the
    same statements and result builder as ``BillingGatewayHook.summary``, on async I/O."""
    psp_cfg = config.psp(psp)
    params = queries.ClassificationParams(
        psp=psp, window=window, grace=config.match_grace, status_mapping=psp_cfg.status_mapping
    ).as_params()
    mapping = config.mapping
    # marks, stored cycles and tables in one snapshot (reconciliation/cycle_store.py)
    await conn.set_autocommit(False)
    await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
    try:
        async with conn.transaction():
            plan = None
            fingerprint = cycle_store.mapping_fingerprint(mapping)
            installed = (await (await conn.execute(cycle_store.store_ready_query())).fetchone())[0]
            if installed == fingerprint:
                params.update(
                    fingerprint=fingerprint, grace_seconds=cycle_store.grace_seconds(config.match_grace)
                )
                rows = await (await conn.execute(cycle_store.clean_cycles_query(), params)).fetchall()
                plan = cycle_store.plan_window(window, [r[0] for r in rows])
                if plan.usable:
                    probe = {**params, **cycle_store.plan_params(plan, window, config.match_grace)}
                    cur = await conn.execute(cycle_store.touched_hours_query(), probe)
                    touched = (await cur.fetchone())[0]
                    if not cycle_store.worth_using(plan, window, touched):
                        plan = None
                else:
                    plan = None
            await conn.execute(
                "SELECT set_config('jit', 'off', true), set_config('work_mem', %s, true)",
                (config.statement_work_mem,),
            )
            if plan is not None:  # see cycle_store.store_settings
                for name, value in cycle_store.store_settings(plan):
                    await conn.execute("SELECT set_config(%s, %s, true)", (name, value))
            elif window.span.total_seconds() <= 86400:
                # see ReconPostgresHook._tune_for_classification
                await conn.execute(
                    "SELECT set_config('random_page_cost', '1.1', true),"
                    " set_config('enable_seqscan', 'off', true)"
                )
            if plan is None:
                totals_q = queries.gateway_totals_query(mapping)
                by_kind_q = queries.divergence_by_kind_query(mapping)
            else:
                params.update(cycle_store.plan_params(plan, window, config.match_grace))
                totals_q = cycle_store.stored_totals_query(mapping)
                by_kind_q = cycle_store.stored_by_kind_query(mapping)
            totals = await (await conn.execute(totals_q, params)).fetchall()
            by_kind = await (await conn.execute(by_kind_q, params)).fetchall()
            last_end = (
                await (
                    await conn.execute(
                        queries.latest_success_query(mapping), {"psp": psp, "reference": reference}
                    )
                ).fetchone()
            )[0]
            wanted = sorted(queries.summary_currencies(totals, by_kind) - {config.reporting_currency})
            rates = []
            if wanted and (await (await conn.execute(fx_queries.table_exists_query())).fetchone())[0]:
                cur = await conn.execute(
                    fx_queries.rates_in_force_query(), {"currencies": wanted, "at": window.end}
                )
                rates = await cur.fetchall()
    finally:
        await conn.set_isolation_level(None)
        await conn.set_autocommit(True)
    return summary_from_results(
        psp=psp,
        window=window,
        totals=totals,
        by_kind_rows=by_kind,
        last_success_end=last_end,
        reference=reference,
        thresholds=config.thresholds.for_psp(psp),
        reporting_currency=config.reporting_currency,
        fx_rates=[FxRate.from_db(r) for r in rates],
    )


async def fetch_alignment_lines(
    gateway: psycopg.AsyncConnection, ledger: psycopg.AsyncConnection, config: Any, psp: str, window: Any
) -> tuple[AlignmentLine, ...]:
    """The ledger, the statement and the gateway per status and currency over ``window``
    (the third recovery criterion): one aggregate query on each database, only the groups
    leave the servers."""
    psp_cfg = config.psp(psp)
    params = queries.ClassificationParams(
        psp=psp, window=window, grace=config.match_grace, status_mapping=psp_cfg.status_mapping
    ).as_params()
    sides = await (await gateway.execute(queries.recovery_sides_query(config.mapping), params)).fetchall()
    try:
        entries = await (await ledger.execute(queries.ledger_totals_query(config.mapping), params)).fetchall()
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
        led = config.mapping.ledger
        raise MappingError(
            f"the ledger table {led.table} cannot be read as configured ({exc.diag.message_primary}): "
            f"it needs the columns {led.psp}, {led.status}, {led.amount_minor}, {led.currency} and "
            f"{led.occurred_at} (map other names in RECON_CONFIG mapping.ledger_transactions)"
        ) from None
    return alignment_lines(
        sides,
        entries,
        status_mapping=psp_cfg.status_mapping,
        ledger_status_mapping=psp_cfg.ledger_status_mapping,
    )


async def fetch_alignment_rates(
    conn: psycopg.AsyncConnection, lines: Any, reporting_currency: str, at: Any
) -> list[FxRate]:
    """The rates in force at ``at`` (the window's end, as the summary's) of the currencies in
    which the ledger differs from the statement; none when ``recon.fx_rates`` is missing."""
    wanted = sorted(gap_currencies(lines) - {reporting_currency, ""})
    if not wanted or not (await (await conn.execute(fx_queries.table_exists_query())).fetchone())[0]:
        return []
    cursor = await conn.execute(fx_queries.rates_in_force_query(), {"currencies": wanted, "at": at})
    return [FxRate.from_db(row) for row in await cursor.fetchall()]
