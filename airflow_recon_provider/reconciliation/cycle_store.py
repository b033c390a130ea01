"""Stored per-cycle classification and its exact invalidation rule (issue 7).

``match_transactions`` classifies each PSP's hourly cycle; this module stores that result
in schema ``recon`` so that a multi-day report, a summary and the sensor's poll reuse it
instead of re-matching every key of the window. Everything here is SQL composition and
pure planning; no Airflow.

What is stored for a cycle ``C = [c, c + 1h)`` of PSP ``p`` (one statement, one snapshot):

- ``recon.cycle_results``: gateway count/amount of rows created in ``C``, the grace,
  status mapping and table-mapping fingerprint it was computed with, and the snapshot
  (``pg_current_snapshot()``) it was computed in;
- ``recon.cycle_divergences`` / ``recon.cycle_kind_totals``: the divergent rows and the
  by-kind totals of the cycle's *local* keys: keys whose every row, on both sides and
  anywhere in the tables, lies inside ``C``. Such a key is classified the same way by
  every window that contains ``C``;
- ``recon.cycle_straddlers``: the other keys in scope of ``C`` (a row outside ``C``:
  across an hour edge through the grace period, a duplicate in another cycle). They are
  never answered from the store: a reader classifies them live for its own window.

Invalidation (exact): triggers on the gateway, statement and intents tables record, for
every row inserted, deleted or updated (old and new version), the PSP and the hour of the
row in ``recon.cycle_marks`` with the id of the changing transaction (``last_xid``; the
upsert locks the mark, so when the last changer is visible in a snapshot every earlier
one is too). For a window ``W`` a reader, in one REPEATABLE READ snapshot:

1. uses a stored cycle only if it lies inside ``W``, was computed with the current grace,
   status mapping and table mapping, and its own hour has no mark invisible to its
   snapshot (``clean``); everything else of ``W`` (dirty, missing, partially covered
   cycles) is a *live segment*;
2. classifies live, for ``W``'s rules, the keys with a row in a live segment, the
   straddlers of the clean cycles, and the keys with a row in an hour of ``W``'s grace
   edges (the widened range outside ``W``'s whole hours) whose mark is invisible to the
   snapshot of some clean cycle. A change after a clean cycle ``C`` was stored to a row in
   one of ``W``'s whole hours needs no such check: that hour's cycle is dirty (stored
   before the change), or has the key among its straddlers (stored after: the key has
   rows in ``C``), or is missing; the key is classified live either way;
3. takes the stored rows of the clean cycles except those keys.

The union is the live full-window classification: a key not classified live has all of
its rows in one clean cycle, unchanged since it was stored, and nothing else in ``W``'s
widened range.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import sql

from airflow_recon_provider.reconciliation.mapping import TableMapping
from airflow_recon_provider.reconciliation.queries import (
    CLASSIFY_CTES,
    JOIN_CTE,
    PARTS_SQL,
    aggregate_columns,
    side_aggregates,
    sql_names,
)
from airflow_recon_provider.reconciliation.window import CYCLE, Window, floor_cycle

STATE_TABLE = sql.Identifier("recon", "cycle_store_state")


def mapping_fingerprint(m: TableMapping) -> str:
    """What the triggers and a stored cycle were built for: the classification's tables."""
    return json.dumps(
        {
            "intents": asdict(m.intents),
            "transactions": asdict(m.transactions),
            "statements": asdict(m.statements),
        },
        sort_keys=True,
        default=str,
    )


def grace_seconds(grace: timedelta) -> int:
    return int(grace.total_seconds())


# -- the plan of a reader -----------------------------------------------------------------


@dataclass(frozen=True)
class StorePlan:
    """Clean stored cycles of a window and the live segments around them."""

    clean: tuple[datetime, ...]
    live: tuple[Window, ...]

    @property
    def usable(self) -> bool:
        return bool(self.clean)


def plan_window(window: Window, clean_starts: list[datetime]) -> StorePlan:
    """Split ``window`` into clean stored cycles (inside it) and live segments."""
    clean = sorted({c for c in clean_starts if window.start <= c and c + CYCLE <= window.end})
    live: list[Window] = []
    cursor = window.start
    for c in clean:
        if cursor < c:
            live.append(Window(cursor, c))
        cursor = c + CYCLE
    if cursor < window.end:
        live.append(Window(cursor, window.end))
    return StorePlan(tuple(clean), tuple(live))


#: above this share of the window classified live (live segments plus hours changed since a
#: clean cycle was stored), the one-shot live query is cheaper than probing keys one by one
MAX_LIVE_SHARE = 0.25


def worth_using(plan: StorePlan, window: Window, touched_hours: int) -> bool:
    """Whether the store should answer: some clean cycle, and not most of the window live."""
    if not plan.usable:
        return False
    live = sum((w.span for w in plan.live), timedelta(0)) + touched_hours * CYCLE
    return live <= window.span * MAX_LIVE_SHARE


#: live time below which the stored path runs without parallel workers
SMALL_LIVE = 3 * CYCLE


def store_settings(plan: StorePlan) -> list[tuple[str, str]]:
    """Planner settings for the stored path's statements (``set_config(..., true)``: this
    transaction only). Its CTEs are tiny, but the planner sizes hash aggregates and parallel
    workers from estimates that grow with the tables (a range over a CTE's bounds gets the
    default selectivity): on a 10M-row table an hourly summary from the store spent most of
    its 150 ms allocating hash tables for a few hundred keys and starting workers. So:
    sort-based grouping always and, when little of the window is live, no parallel workers
    (turning hash joins off as well made some PSPs' plans far slower: not done)."""
    settings = [
        ("enable_hashagg", "off"),
        ("jit", "off"),
        ("enable_seqscan", "off"),
        ("random_page_cost", "1.1"),
    ]
    if sum((w.span for w in plan.live), timedelta(0)) <= SMALL_LIVE:
        settings.append(("max_parallel_workers_per_gather", "0"))
    return settings


def plan_params(plan: StorePlan, window: Window, grace: timedelta) -> dict[str, Any]:
    wide = window.widened(grace)
    return {
        "clean": list(plan.clean),
        "live_starts": [w.start for w in plan.live],
        "live_ends": [w.end for w in plan.live],
        "mark_from": floor_cycle(wide.start),
    }


# -- SQL --------------------------------------------------------------------------------


def store_cycle_query(m: TableMapping) -> sql.Composed:
    """Classify one cycle (``%(start)s``-``%(end)s``, widened by the grace) and store it,
    in one statement (one snapshot, recorded with the result). The cycle's previous child
    rows must have been deleted before (:func:`forget_cycle_children_query`). Returns one
    row: gateway count and amount, divergent rows, kinds and straddlers stored."""
    return sql.SQL(
        """WITH {sides},
k AS MATERIALIZED (
    -- keys in scope of the cycle; local: every row of the key, both sides, anywhere in the
    -- tables, is inside the cycle (rows beyond the widened range are probed by key)
    -- (scalar subqueries with LIMIT: one index probe per key, never an anti-join over the
    -- PSP's whole history, so the cost follows the cycle, not the table)
    SELECT COALESCE(g0.ref, s0.ref) AS ref, COALESCE(g0.ttype, s0.ttype) AS ttype,
           g0.n AS gn, s0.n AS sn,
           g0.total AS g_total, s0.total AS s_total,
           s0.first_id AS s_first_id,
           g0.status AS g_status, s0.status AS s_status,
           g0.currency AS g_currency, s0.currency AS s_currency,
           g0.currency_hi AS g_currency_hi, s0.currency_hi AS s_currency_hi,
           g0.first_id AS g_first_id,
           CASE
               WHEN NOT (COALESCE(g0.all_in, true) AND COALESCE(s0.all_in, true)) THEN false
               WHEN (SELECT 1 FROM {intents} AS fi JOIN {transactions} AS ft ON ft.{t_intent} = fi.{i_id}
                     WHERE fi.{i_provider} = %(psp)s AND fi.{i_ref} = COALESCE(g0.ref, s0.ref)
                       AND ft.{t_type} = COALESCE(g0.ttype, s0.ttype)
                       AND (ft.{t_created} < %(wide_start)s OR ft.{t_created} >= %(wide_end)s)
                     LIMIT 1) IS NOT NULL THEN false
               WHEN (SELECT 1 FROM {statements} AS fl
                     WHERE fl.{s_psp} = %(psp)s AND fl.{s_ref} = COALESCE(g0.ref, s0.ref)
                       AND fl.{s_type} = COALESCE(g0.ttype, s0.ttype)
                       AND (fl.{s_occurred} < %(wide_start)s OR fl.{s_occurred} >= %(wide_end)s)
                     LIMIT 1) IS NOT NULL THEN false
               ELSE true
           END AS local
    FROM g0 FULL JOIN s0 ON g0.ref = s0.ref AND g0.ttype = s0.ttype
    WHERE COALESCE(g0.in_window, false) OR COALESCE(s0.in_window, false)
),
j AS (
    -- local keys that do not match cleanly (the live query's j, restricted to local keys)
    SELECT ref, ttype, gn, sn, g_total, s_total, s_first_id, g_status, s_status,
           g_currency, s_currency, g_currency_hi, s_currency_hi, g_first_id
    FROM k
    WHERE k.local
      AND (gn = 1 AND sn = 1 AND g_currency = s_currency AND g_total = s_total
           AND g_status = s_status) IS NOT TRUE
),
{tail},
by_currency AS (
    SELECT upper(t.{t_currency}) COLLATE "C" AS currency, count(*)::bigint AS n,
           COALESCE(sum(t.{t_amount}), 0)::bigint AS amount
    FROM {transactions} AS t JOIN {intents} AS i ON i.{i_id} = t.{t_intent}
    WHERE i.{i_provider} = %(psp)s AND t.{t_created} >= %(start)s AND t.{t_created} < %(end)s
    GROUP BY 1
),
totals AS (
    SELECT COALESCE(sum(n), 0)::bigint AS n, COALESCE(sum(amount), 0)::bigint AS amount,
           COALESCE(jsonb_object_agg(COALESCE(currency, ''), jsonb_build_array(n, amount))
                    FILTER (WHERE n IS NOT NULL), '{{}}'::jsonb) AS by_currency
    FROM by_currency
),
result AS (
    INSERT INTO recon.cycle_results AS r (psp, cycle_start, cycle_end, grace_seconds, status_mapping,
        mapping_fingerprint, computed_snapshot, computed_at, gateway_count, gateway_amount_minor,
        straddler_count, gateway_by_currency)
    SELECT %(psp)s, %(start)s, %(end)s, %(grace_seconds)s, %(status_map)s::jsonb, %(fingerprint)s,
           pg_current_snapshot(), clock_timestamp(), totals.n, totals.amount,
           (SELECT count(*) FROM k WHERE NOT k.local), totals.by_currency
    FROM totals
    ON CONFLICT (psp, cycle_start) DO UPDATE SET
        cycle_end = EXCLUDED.cycle_end, grace_seconds = EXCLUDED.grace_seconds,
        status_mapping = EXCLUDED.status_mapping, mapping_fingerprint = EXCLUDED.mapping_fingerprint,
        computed_snapshot = EXCLUDED.computed_snapshot, computed_at = EXCLUDED.computed_at,
        gateway_count = EXCLUDED.gateway_count, gateway_amount_minor = EXCLUDED.gateway_amount_minor,
        straddler_count = EXCLUDED.straddler_count, gateway_by_currency = EXCLUDED.gateway_by_currency
    RETURNING r.psp
),
rows_stored AS (
    INSERT INTO recon.cycle_divergences (psp, cycle_start, kind, provider_reference, transaction_type,
        gateway_status, statement_status, gateway_amount_minor, statement_amount_minor,
        divergent_amount_minor, currency, gateway_count, statement_count, gateway_first_id,
        statement_currency, other_amounts)
    SELECT %(psp)s, %(start)s, kind, ref, ttype, g_status, s_status, g_total, s_total,
           divergent_amount_minor, currency, gn, sn, g_first_id, statement_currency, other_amounts
    FROM d, result
    RETURNING kind, divergent_amount_minor
),
kinds_stored AS (
    INSERT INTO recon.cycle_kind_totals (psp, cycle_start, kind, currency, divergent_count,
        divergent_amount_minor)
    SELECT %(psp)s, %(start)s, p.kind, COALESCE(p.currency, ''), sum(p.n), sum(p.amount)::bigint
    FROM ({parts}) AS p, result GROUP BY p.kind, p.currency
    RETURNING kind
),
straddlers AS (
    INSERT INTO recon.cycle_straddlers (psp, cycle_start, provider_reference, transaction_type)
    SELECT %(psp)s, %(start)s, k.ref, k.ttype FROM k, result WHERE NOT k.local
    RETURNING 1
)
SELECT (SELECT n FROM totals), (SELECT amount FROM totals),
       (SELECT count(*) FROM rows_stored), (SELECT count(*) FROM kinds_stored),
       (SELECT count(*) FROM straddlers)"""
    ).format(
        sides=side_aggregates(m, g="g0", s="s0", all_in=True),
        tail=sql.SQL(CLASSIFY_CTES).format(**sql_names(m)),
        parts=sql.SQL(PARTS_SQL.format(rel="d")),
        **sql_names(m),
    )


def forget_cycle_children_query() -> sql.SQL:
    return sql.SQL(
        """WITH a AS (DELETE FROM recon.cycle_divergences WHERE psp = %(psp)s AND cycle_start = %(start)s),
b AS (DELETE FROM recon.cycle_kind_totals WHERE psp = %(psp)s AND cycle_start = %(start)s),
c AS (DELETE FROM recon.cycle_straddlers WHERE psp = %(psp)s AND cycle_start = %(start)s)
SELECT 1"""
    )


def store_ready_query() -> sql.SQL:
    """The table-mapping fingerprint the change triggers were installed for (no row: none)."""
    return sql.SQL(
        "SELECT CASE WHEN to_regclass('recon.cycle_store_state') IS NULL THEN NULL ELSE "
        "(SELECT mapping_fingerprint FROM recon.cycle_store_state WHERE triggers_installed) END"
    )


def store_state_query() -> sql.SQL:
    """``(mapping_fingerprint, triggers_installed)`` of the store; no row: never enabled, or
    migration 5 not applied."""
    return sql.SQL(
        "SELECT (s).mapping_fingerprint, (s).triggers_installed FROM (SELECT CASE WHEN "
        "to_regclass('recon.cycle_store_state') IS NULL THEN NULL ELSE "
        "(SELECT st FROM recon.cycle_store_state AS st) END AS s) AS q WHERE s IS NOT NULL"
    )


def clean_cycles_query() -> sql.SQL:
    """Stored cycles inside the window, computed with the current grace, status mapping and
    table mapping, whose own hour has not changed since (no mark invisible to their
    snapshot)."""
    return sql.SQL(
        """SELECT r.cycle_start FROM recon.cycle_results AS r
WHERE r.psp = %(psp)s AND r.cycle_start >= %(start)s AND r.cycle_end <= %(end)s
  AND r.grace_seconds = %(grace_seconds)s AND r.status_mapping = %(status_map)s::jsonb
  AND r.mapping_fingerprint = %(fingerprint)s
  AND NOT EXISTS (
      SELECT 1 FROM recon.cycle_marks AS m
      WHERE m.psp = r.psp AND m.cycle_start = r.cycle_start
        AND NOT pg_visible_in_snapshot(m.last_xid, r.computed_snapshot))
ORDER BY r.cycle_start"""
    )


def touched_hours_query() -> sql.SQL:
    """How many hours of the widened window changed after some clean cycle was stored (the
    ``touched`` CTE of the readers, counted before choosing the stored path)."""
    return sql.SQL(
        """SELECT count(*) FROM recon.cycle_marks AS m
WHERE m.psp = %(psp)s AND m.cycle_start >= %(mark_from)s AND m.cycle_start < %(wide_end)s
  AND NOT (m.cycle_start >= %(start)s AND m.cycle_start + interval '1 hour' <= %(end)s)
  AND EXISTS (SELECT 1 FROM recon.cycle_results AS r
              WHERE r.psp = %(psp)s AND r.cycle_start = ANY(%(clean)s::timestamptz[])
                AND NOT pg_visible_in_snapshot(m.last_xid, r.computed_snapshot))"""
    )


def _live_keys_ctes(m: TableMapping) -> sql.Composed:
    """``clean``, ``touched``, ``ranges``, ``keys`` (keys to classify live for the window),
    then ``g``/``s`` per key over the window's widened range, ``j``, ``c``, ``d``."""
    return sql.SQL(
        """clean AS MATERIALIZED (
    SELECT r.cycle_start, r.computed_snapshot FROM recon.cycle_results AS r
    WHERE r.psp = %(psp)s AND r.cycle_start = ANY(%(clean)s::timestamptz[])
),
touched AS (
    -- hours of the widened range outside W's whole hours (its grace edges) changed after
    -- some clean cycle was stored; a change in one of W's whole hours is caught by that
    -- hour's own cycle (dirty, missing, or the key is its straddler)
    SELECT m.cycle_start FROM recon.cycle_marks AS m
    WHERE m.psp = %(psp)s AND m.cycle_start >= %(mark_from)s AND m.cycle_start < %(wide_end)s
      AND NOT (m.cycle_start >= %(start)s AND m.cycle_start + interval '1 hour' <= %(end)s)
      AND EXISTS (SELECT 1 FROM clean WHERE NOT pg_visible_in_snapshot(m.last_xid, clean.computed_snapshot))
),
ranges AS (
    SELECT u.s, u.e FROM unnest(%(live_starts)s::timestamptz[], %(live_ends)s::timestamptz[]) AS u(s, e)
    UNION ALL
    SELECT greatest(touched.cycle_start, %(wide_start)s),
           least(touched.cycle_start + interval '1 hour', %(wide_end)s)
    FROM touched
),
keys AS MATERIALIZED (
    SELECT i.{i_ref} AS ref, t.{t_type} AS ttype
    FROM ranges AS r
    JOIN {transactions} AS t ON t.{t_created} >= r.s AND t.{t_created} < r.e
    JOIN {intents} AS i ON i.{i_id} = t.{t_intent}
    WHERE i.{i_provider} = %(psp)s
    UNION
    SELECT l.{s_ref}, l.{s_type}
    FROM ranges AS r
    JOIN {statements} AS l ON l.{s_psp} = %(psp)s AND l.{s_occurred} >= r.s AND l.{s_occurred} < r.e
    UNION
    SELECT x.provider_reference, x.transaction_type FROM recon.cycle_straddlers AS x
    WHERE x.psp = %(psp)s AND x.cycle_start = ANY(%(clean)s::timestamptz[])
),
-- one index probe per key (LATERAL): the keys are few (straddlers, changed and live
-- cycles' keys), and a range scan of the widened window is what the store avoids
g AS (
    SELECT k.ref, k.ttype, x.n, x.total, x.first_id, x.status, x.currency, x.currency_hi, x.in_window
    FROM keys AS k
    CROSS JOIN LATERAL (
        SELECT {g_columns}
        FROM {intents} AS i
        JOIN {transactions} AS t ON t.{t_intent} = i.{i_id}
        WHERE i.{i_provider} = %(psp)s AND i.{i_ref} = k.ref AND t.{t_type} = k.ttype
          AND t.{t_created} >= %(wide_start)s AND t.{t_created} < %(wide_end)s
    ) AS x
    WHERE x.n > 0
),
s AS (
    SELECT k.ref, k.ttype, x.n, x.total, x.first_id, x.status, x.currency, x.currency_hi, x.in_window
    FROM keys AS k
    CROSS JOIN LATERAL (
        SELECT {s_columns}
        FROM {statements} AS l
        WHERE l.{s_psp} = %(psp)s AND l.{s_ref} = k.ref AND l.{s_type} = k.ttype
          AND l.{s_occurred} >= %(wide_start)s AND l.{s_occurred} < %(wide_end)s
    ) AS x
    WHERE x.n > 0
),
{j},
{tail},
stored AS (
    SELECT v.kind, v.provider_reference AS ref, v.transaction_type AS ttype,
           v.gateway_status AS g_status, v.statement_status AS s_status,
           v.gateway_amount_minor AS g_total, v.statement_amount_minor AS s_total,
           v.divergent_amount_minor, v.currency,
           v.gateway_count AS gn, v.statement_count AS sn, v.gateway_first_id AS g_first_id,
           v.statement_currency, v.other_amounts
    FROM recon.cycle_divergences AS v
    WHERE v.psp = %(psp)s AND v.cycle_start = ANY(%(clean)s::timestamptz[])
      AND v.kind = ANY(%(kinds)s::text[])
      AND NOT EXISTS (SELECT 1 FROM keys WHERE keys.ref = v.provider_reference
                                          AND keys.ttype = v.transaction_type)
)"""
    ).format(
        j=sql.SQL(JOIN_CTE),
        tail=sql.SQL(CLASSIFY_CTES).format(**sql_names(m)),
        **aggregate_columns(m),
        **sql_names(m),
    )


def stored_report_query(m: TableMapping) -> sql.Composed:
    """The report of a window from clean stored cycles plus the keys classified live;
    same columns and order as :func:`queries.divergence_report_query`."""
    return sql.SQL(
        """WITH {ctes}
SELECT kind, ref, ttype, g_status, s_status, g_total, s_total,
       divergent_amount_minor, currency, gn, sn, g_first_id, statement_currency, other_amounts
FROM (
    SELECT kind, ref, ttype, g_status, s_status, g_total, s_total,
           divergent_amount_minor, currency, gn, sn, g_first_id, statement_currency, other_amounts FROM d
    UNION ALL
    SELECT kind, ref, ttype, g_status, s_status, g_total, s_total,
           divergent_amount_minor, currency, gn, sn, g_first_id, statement_currency, other_amounts
    FROM stored
) AS u
ORDER BY array_position(%(kinds)s::text[], kind), ref COLLATE "C", ttype COLLATE "C"
"""
    ).format(ctes=_live_keys_ctes(m))


def stored_by_kind_query(m: TableMapping) -> sql.Composed:
    """Per currency and kind: stored totals of the clean cycles, less their keys classified
    live, plus the live keys; same rows as :func:`queries.divergence_by_kind_query`."""
    return sql.SQL(
        """WITH {ctes},
excluded AS (
    SELECT v.kind, v.currency, v.divergent_amount_minor, v.other_amounts FROM keys
    JOIN recon.cycle_divergences AS v
      ON v.psp = %(psp)s AND v.provider_reference = keys.ref AND v.transaction_type = keys.ttype
    WHERE v.cycle_start = ANY(%(clean)s::timestamptz[]) AND v.kind = ANY(%(kinds)s::text[])
)
SELECT currency, kind, sum(n)::bigint, sum(amount)::bigint FROM (
    SELECT NULLIF(currency, '') AS currency, kind, divergent_count AS n, divergent_amount_minor AS amount
    FROM recon.cycle_kind_totals
    WHERE psp = %(psp)s AND cycle_start = ANY(%(clean)s::timestamptz[]) AND kind = ANY(%(kinds)s::text[])
    UNION ALL
    SELECT p.currency, p.kind, -p.n, -p.amount FROM ({excluded_parts}) AS p
    UNION ALL
    SELECT p.currency, p.kind, p.n, p.amount FROM ({parts}) AS p
) AS u
GROUP BY 1, 2 HAVING sum(n) <> 0 OR sum(amount) <> 0"""
    ).format(
        ctes=_live_keys_ctes(m),
        excluded_parts=sql.SQL(PARTS_SQL.format(rel="excluded")),
        parts=sql.SQL(PARTS_SQL.format(rel="d")),
    )


def stored_totals_query(m: TableMapping) -> sql.Composed:
    """Gateway count and amount of the window per currency: stored for clean cycles, live
    for the rest; rows ``(currency, count, amount)`` like :func:`queries.gateway_totals_query`."""
    return sql.SQL(
        """SELECT currency, sum(n)::bigint, sum(amount)::bigint FROM (
    SELECT NULLIF(c.key, '') AS currency, (c.value ->> 0)::bigint AS n, (c.value ->> 1)::bigint AS amount
    FROM recon.cycle_results AS r CROSS JOIN LATERAL jsonb_each(r.gateway_by_currency) AS c
    WHERE r.psp = %(psp)s AND r.cycle_start = ANY(%(clean)s::timestamptz[])
    UNION ALL
    SELECT upper(t.{t_currency}) COLLATE "C", count(*), sum(t.{t_amount})
    FROM unnest(%(live_starts)s::timestamptz[], %(live_ends)s::timestamptz[]) AS u(s, e)
    JOIN {transactions} AS t ON t.{t_created} >= u.s AND t.{t_created} < u.e
    JOIN {intents} AS i ON i.{i_id} = t.{t_intent}
    WHERE i.{i_provider} = %(psp)s
    GROUP BY 1
) AS u
GROUP BY 1"""
    ).format(**sql_names(m))
