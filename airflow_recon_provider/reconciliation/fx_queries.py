"""SQL of ``recon.fx_rates`` (schema migration 6), as psycopg ``sql`` compositions: every
value is a bound parameter, the table name an identifier. Pure: no connection here.

A rate is in force from its ``valid_from``; the rate of a moment is the row with the
greatest ``valid_from <= moment`` (DESIGN 3a), one primary-key probe per currency.
"""

from __future__ import annotations

from psycopg import sql

FX_RATES = sql.Identifier("recon", "fx_rates")
COLUMNS = ("currency", "rate", "valid_from", "source")
_COLUMNS = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)


def table_exists_query() -> sql.Composed:
    """One row: whether ``recon.fx_rates`` exists (``airflow-recon migrate`` ran)."""
    return sql.SQL("SELECT to_regclass({}) IS NOT NULL").format(sql.Literal("recon.fx_rates"))


def lock_for_load_query() -> sql.Composed:
    """Loads and daily upserts of rates one at a time (readers are not blocked), so that the
    "already in the table" check of a load still holds when its rows are written."""
    return sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(FX_RATES)


def existing_keys_query() -> sql.Composed:
    """The stored rows (``currency, rate, valid_from, source, loaded_at``) with one of the
    keys ``%(currencies)s[i], %(valid_froms)s[i]``."""
    return sql.SQL(
        "SELECT f.currency, f.rate, f.valid_from, f.source, f.loaded_at"
        " FROM {table} AS f"
        " JOIN unnest(%(currencies)s::text[], %(valid_froms)s::timestamptz[]) AS k (currency, valid_from)"
        " ON f.currency = k.currency AND f.valid_from = k.valid_from"
        " ORDER BY f.currency, f.valid_from"
    ).format(table=FX_RATES)


def copy_rates_statement() -> sql.Composed:
    """``COPY`` of new rates (``currency, rate, valid_from, source``); a key already stored
    fails the whole statement (primary key)."""
    return sql.SQL("COPY {table} ({columns}) FROM STDIN").format(table=FX_RATES, columns=_COLUMNS)


def insert_if_absent_query() -> sql.Composed:
    """One rate, inserted unless its ``(currency, valid_from)`` is stored already; returns
    whether it was inserted (``true``) or the stored ``rate, source`` (``false``)."""
    return sql.SQL(
        "WITH ins AS ("
        " INSERT INTO {table} ({columns}) VALUES (%(currency)s, %(rate)s, %(valid_from)s, %(source)s)"
        " ON CONFLICT (currency, valid_from) DO NOTHING RETURNING rate, source)"
        " SELECT true, rate, source FROM ins"
        " UNION ALL"
        " SELECT false, f.rate, f.source FROM {table} AS f"
        " WHERE f.currency = %(currency)s AND f.valid_from = %(valid_from)s AND NOT EXISTS (SELECT FROM ins)"
    ).format(table=FX_RATES, columns=_COLUMNS)


def rates_in_force_query() -> sql.Composed:
    """Per currency of ``%(currencies)s``, the row with the greatest ``valid_from <= %(at)s``
    (``currency, rate, valid_from, source``); currencies without one have no row."""
    return sql.SQL(
        "SELECT c.currency, r.rate, r.valid_from, r.source"
        " FROM unnest(%(currencies)s::text[]) AS c (currency)"
        " CROSS JOIN LATERAL ("
        "   SELECT f.rate, f.valid_from, f.source FROM {table} AS f"
        "    WHERE f.currency = c.currency AND f.valid_from <= %(at)s"
        "    ORDER BY f.valid_from DESC LIMIT 1) AS r"
        " ORDER BY c.currency"
    ).format(table=FX_RATES)
