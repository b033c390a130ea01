"""DDL of the stored per-cycle classification (reconciliation/cycle_store.py) on the
gateway's tables: the change-mark functions and triggers, and the key indexes the store's
probes need. The store's own ``recon`` tables are schema migration 5 (migrations.py);
these statements depend on the table mapping and are installed by
:func:`~airflow_recon_provider.schema.migrations.install_cycle_store` (opt-in). Identifiers
from the mapping, through ``sql.Identifier``.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from airflow_recon_provider.reconciliation.mapping import TableMapping, sql_names

_HOUR = "(date_trunc('hour', {ts} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"


def _mark_insert(select: sql.Composable) -> sql.Composed:
    return sql.SQL(
        """INSERT INTO recon.cycle_marks AS m (psp, cycle_start, last_xid, changed_at)
        SELECT y.psp, y.hour, pg_current_xact_id(), clock_timestamp()
        FROM (SELECT DISTINCT x.psp, x.hour FROM ({select}) AS x WHERE x.psp IS NOT NULL) AS y
        ON CONFLICT (psp, cycle_start) DO UPDATE
        SET last_xid = EXCLUDED.last_xid, changed_at = EXCLUDED.changed_at;"""
    ).format(select=select)


def _function(name: str, old: sql.Composable, new: sql.Composable) -> sql.Composed:
    return sql.SQL(
        """CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql
-- the writers of the gateway tables (the gateway itself, the hourly DAG, a correction) need
-- no right on recon.cycle_marks; every name below is schema-qualified
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        {old}
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        {new}
    END IF;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    -- never block a write of the gateway because of the store (e.g. a mapped table renamed
    -- since the triggers were installed): disable the store instead, readers go live until
    -- `install_cycle_store` runs again
    UPDATE recon.cycle_store_state SET triggers_installed = false;
    DELETE FROM recon.cycle_results;
    RAISE WARNING 'recon cycle store disabled: % (%)', SQLERRM, SQLSTATE;
    RETURN NULL;
END
$fn$"""
    ).format(fn=sql.Identifier("recon", name), old=_mark_insert(old), new=_mark_insert(new))


def trigger_ddl(m: TableMapping) -> list[sql.Composed]:
    """Functions and statement-level triggers (transition tables) that mark the hours of
    every changed row of the classification's tables, and forget every stored cycle on
    TRUNCATE. Identifiers from the mapping, through ``sql.Identifier``; the tables must be
    schema-qualified (the functions run with a fixed search_path), see
    :func:`qualified_mapping`."""
    names = sql_names(m)
    # each marking function: the PSP and hour of each row of a transition table ``{rows}``
    # (``r``), and the alias and column the hour is taken from
    marks = (
        (
            "mark_statement_cycles",
            "SELECT r.{s_psp} AS psp, {hour} AS hour FROM {rows} AS r",
            "r",
            "s_occurred",
        ),
        (
            "mark_transaction_cycles",
            "SELECT i.{i_provider} AS psp, {hour} AS hour FROM {rows} AS r "
            "JOIN {intents} AS i ON i.{i_id} = r.{t_intent}",
            "r",
            "t_created",
        ),
        (
            "mark_intent_cycles",
            "SELECT r.{i_provider} AS psp, {hour} AS hour FROM {rows} AS r "
            "JOIN {transactions} AS t ON t.{t_intent} = r.{i_id}",
            "t",
            "t_created",
        ),
    )

    def side(select: str, rows: str, hour_of: str, at: str) -> sql.Composed:
        hour = sql.SQL(_HOUR).format(ts=sql.SQL("{}.{}").format(sql.Identifier(hour_of), names[at]))
        return sql.SQL(select).format(hour=hour, rows=sql.Identifier(rows), **names)

    ddl = [
        _function(fn, side(select, "old_rows", hour_of, at), side(select, "new_rows", hour_of, at))
        for fn, select, hour_of, at in marks
    ]
    ddl.append(
        sql.SQL(
            """CREATE OR REPLACE FUNCTION recon.forget_stored_cycles() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    DELETE FROM recon.cycle_results;
    RETURN NULL;
END
$fn$"""
        )
    )
    for table, fn in (
        (m.statements, "mark_statement_cycles"),
        (m.transactions, "mark_transaction_cycles"),
        (m.intents, "mark_intent_cycles"),
    ):
        for event, referencing in (
            ("INSERT", "REFERENCING NEW TABLE AS new_rows"),
            ("UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"),
            ("DELETE", "REFERENCING OLD TABLE AS old_rows"),
        ):
            name = sql.Identifier(f"recon_cycle_marks_{event.lower()}")
            ddl.append(
                sql.SQL("DROP TRIGGER IF EXISTS {name} ON {table}").format(name=name, table=table.table.ident)
            )
            ddl.append(
                sql.SQL(
                    "CREATE TRIGGER {name} AFTER {event} ON {table} {referencing} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"
                ).format(
                    name=name,
                    event=sql.SQL(event),
                    table=table.table.ident,
                    referencing=sql.SQL(referencing),
                    fn=sql.Identifier("recon", fn),
                )
            )
        name = sql.Identifier("recon_cycle_marks_truncate")
        ddl.append(
            sql.SQL("DROP TRIGGER IF EXISTS {name} ON {table}").format(name=name, table=table.table.ident)
        )
        ddl.append(
            sql.SQL(
                "CREATE TRIGGER {name} AFTER TRUNCATE ON {table} FOR EACH STATEMENT "
                "EXECUTE FUNCTION recon.forget_stored_cycles()"
            ).format(name=name, table=table.table.ident)
        )
    return ddl


def qualified_mapping(m: TableMapping, schema_of: dict[str, str]) -> TableMapping:
    """``m`` with the schema of each classification table filled in from ``schema_of``
    (table as configured -> schema where the database found it)."""
    from dataclasses import replace

    from airflow_recon_provider.reconciliation.mapping import TableRef

    def q(section: Any) -> Any:
        ref = section.table
        if ref.schema is not None:
            return section
        return replace(section, table=TableRef(ref.name, schema_of[str(ref)]))

    return replace(m, intents=q(m.intents), transactions=q(m.transactions), statements=q(m.statements))


def key_index_ddl(m: TableMapping) -> list[sql.Composed]:
    """Indexes the key lookups of the store need (a key's rows anywhere in the tables)."""
    i, st = m.intents, m.statements
    return [
        sql.SQL("CREATE INDEX IF NOT EXISTS {name} ON {table} ({provider}, {ref})").format(
            name=sql.Identifier(f"{i.table.name}_recon_key"),
            table=i.table.ident,
            provider=i.col("provider"),
            ref=i.col("provider_reference"),
        ),
        sql.SQL("CREATE INDEX IF NOT EXISTS {name} ON {table} ({psp}, {ref}, {ttype})").format(
            name=sql.Identifier(f"{st.table.name}_recon_key"),
            table=st.table.ident,
            psp=st.col("psp"),
            ref=st.col("provider_reference"),
            ttype=st.col("transaction_type"),
        ),
    ]
