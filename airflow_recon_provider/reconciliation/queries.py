"""The SQL of the reconciliation, composed with ``psycopg.sql``.

Identifiers come from :class:`TableMapping` through ``sql.Identifier``; every value
(PSP, window bounds, status mapping, kinds) is a bound parameter. The divergence
classification of DESIGN section 3 is one set-based statement per PSP and window:
both sides are pre-aggregated by key inside PostgreSQL, joined, classified, and
only divergent keys leave the server.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from airflow_recon_provider.reconciliation.detection import (
    REAL_RUN_LEASE_EVENTS,
    WATCH_ALERT_STEP,
    OpenIncidentActivity,
)
from airflow_recon_provider.reconciliation.finance_report import FinanceReportStep
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS, DivergenceKind, parse_kinds
from airflow_recon_provider.reconciliation.mapping import TableMapping, sql_names
from airflow_recon_provider.reconciliation.remediation import RemediationStep
from airflow_recon_provider.reconciliation.report import REPORT_FIELDS
from airflow_recon_provider.reconciliation.window import Window

#: the report's columns: a report line's fields
#: (:data:`~airflow_recon_provider.reconciliation.report.REPORT_FIELDS`), then what the rows
#: carry besides
REPORT_COLUMNS = (
    *REPORT_FIELDS,
    "gateway_count",
    "statement_count",
    "gateway_first_id",
    "statement_currency",
    "other_amounts",
)


@dataclass(frozen=True)
class ClassificationParams:
    """The bound values of one classification: PSP, window, grace, status mapping, kinds."""

    psp: str
    window: Window
    grace: timedelta
    status_mapping: dict[str, str]
    kinds: tuple[DivergenceKind, ...] = ALL_KINDS

    def as_params(self) -> dict[str, Any]:
        wide = self.window.widened(self.grace)
        return {
            "psp": self.psp,
            "start": self.window.start,
            "end": self.window.end,
            "wide_start": wide.start,
            "wide_end": wide.end,
            "status_map": Jsonb(self.status_mapping),
            # parse_kinds: unknown kinds are a DivergenceKindError (not silently no rows), and
            # the canonical decision order, because the report is ordered by array_position in
            # this array and must not depend on the order in which a caller listed the kinds
            "kinds": [k.value for k in parse_kinds(self.kinds)],
        }


#: ``j``: the keys of ``g`` and ``s`` in scope (a row in the window) that do not match
#: cleanly; shared by the one-shot query and the cycle store (reconciliation/cycle_store.py)
JOIN_CTE = """
j AS (
    SELECT COALESCE(g.ref, s.ref) AS ref,
           COALESCE(g.ttype, s.ttype) AS ttype,
           g.n AS gn, s.n AS sn,
           g.total AS g_total, s.total AS s_total,
           s.first_id AS s_first_id,
           g.status AS g_status, s.status AS s_status,
           g.currency AS g_currency, s.currency AS s_currency,
           g.currency_hi AS g_currency_hi, s.currency_hi AS s_currency_hi,
           g.first_id AS g_first_id
    FROM g FULL JOIN s ON g.ref = s.ref AND g.ttype = s.ttype
    WHERE (COALESCE(g.in_window, false) OR COALESCE(s.in_window, false))
      -- most keys match cleanly: drop them with a few cheap comparisons before the
      -- classification CASE runs (exactly the keys the CASE leaves NULL)
      AND (g.n = 1 AND s.n = 1 AND g.currency = s.currency AND g.total = s.total
           AND g.status = s.status) IS NOT TRUE
)"""

#: ``c`` (kind of each key of ``j``, NULL when it matches), ``d0`` (divergent keys: their
#: currency, amount and the side the amount comes from), ``x`` (for the rare keys whose side
#: holds more than one currency, or whose duplicated side is in another currency than the
#: key: that side's total and extra-copy amount per currency, read by key) and ``d`` (the
#: report's rows: amounts in the key's currency, ``other_amounts`` the extra copies in other
#: currencies): the one decision of DESIGN sections 3 and 3a, shared by the one-shot query and
#: the cycle store, formatted with :func:`sql_names`
CLASSIFY_CTES = """
c AS (
    SELECT j.*,
           CASE
               WHEN gn > 1 THEN 'duplicate_in_gateway'
               WHEN sn > 1 THEN 'duplicate_in_statement'
               WHEN sn IS NULL THEN 'missing_in_statement'
               WHEN gn IS NULL THEN 'missing_in_gateway'
               WHEN g_currency IS DISTINCT FROM s_currency THEN 'currency_mismatch'
               WHEN g_total <> s_total THEN 'amount_mismatch'
               WHEN g_status IS DISTINCT FROM s_status THEN 'status_mismatch'
           END AS kind
    FROM j
),
d0 AS MATERIALIZED (
    SELECT kind, ref, ttype, g_status, s_status, g_total, s_total, gn, sn, g_first_id, s_first_id,
           g_mixed, s_mixed,
           CASE WHEN s_mixed THEN NULL ELSE s_currency END AS statement_currency,
           -- the key's currency: its gateway row's with the smallest id, else its statement
           -- line's (read by primary key only when that side holds several currencies)
           CASE
               WHEN gn IS NOT NULL AND NOT g_mixed THEN g_currency
               WHEN gn IS NOT NULL
                   THEN (SELECT upper(f.{t_currency}) COLLATE "C" FROM {transactions} AS f
                         WHERE f.{t_id} = g_first_id)
               WHEN NOT s_mixed THEN s_currency
               ELSE (SELECT upper(f.{s_currency}) COLLATE "C" FROM {statements} AS f
                     WHERE f.{s_id} = s_first_id)
           END AS currency,
           -- the side the divergent amount comes from, and its currency when it has one
           CASE WHEN kind IN ('duplicate_in_statement', 'missing_in_gateway') THEN 's' ELSE 'g' END AS side,
           CASE WHEN kind IN ('duplicate_in_statement', 'missing_in_gateway')
                THEN CASE WHEN s_mixed THEN NULL ELSE s_currency END
                ELSE CASE WHEN g_mixed THEN NULL ELSE g_currency END
           END AS amount_currency,
           CASE kind
               WHEN 'duplicate_in_gateway'
                   THEN g_total - (SELECT f.{t_amount} FROM {transactions} AS f WHERE f.{t_id} = g_first_id)
               WHEN 'duplicate_in_statement'
                   THEN s_total - (SELECT f.{s_amount} FROM {statements} AS f WHERE f.{s_id} = s_first_id)
               WHEN 'missing_in_statement' THEN g_total
               WHEN 'missing_in_gateway' THEN s_total
               WHEN 'amount_mismatch' THEN abs(g_total - s_total)
               ELSE g_total
           END::bigint AS amount
    FROM (SELECT c.*, (g_currency <> g_currency_hi) IS TRUE AS g_mixed,
                 (s_currency <> s_currency_hi) IS TRUE AS s_mixed
          FROM c) AS c
    WHERE kind IS NOT NULL AND kind = ANY(%(kinds)s::text[])
),
x AS MATERIALIZED (
    SELECT d0.ref, d0.ttype, 'g' AS side, y.currency, y.total, y.extra
    FROM d0 CROSS JOIN LATERAL (
        SELECT upper(t.{t_currency}) COLLATE "C" AS currency,
               sum(t.{t_amount})::bigint AS total,
               (sum(t.{t_amount})
                - COALESCE(sum(t.{t_amount}) FILTER (WHERE t.{t_id} = d0.g_first_id), 0))::bigint AS extra
        FROM {intents} AS i
        JOIN {transactions} AS t ON t.{t_intent} = i.{i_id}
        WHERE i.{i_provider} = %(psp)s AND i.{i_ref} = d0.ref AND t.{t_type} = d0.ttype
          AND t.{t_created} >= %(wide_start)s AND t.{t_created} < %(wide_end)s
        GROUP BY 1
    ) AS y
    WHERE d0.g_mixed
    UNION ALL
    SELECT d0.ref, d0.ttype, 's', y.currency, y.total, y.extra
    FROM d0 CROSS JOIN LATERAL (
        SELECT upper(l.{s_currency}) COLLATE "C" AS currency,
               sum(l.{s_amount})::bigint AS total,
               (sum(l.{s_amount})
                - COALESCE(sum(l.{s_amount}) FILTER (WHERE l.{s_id} = d0.s_first_id), 0))::bigint AS extra
        FROM {statements} AS l
        WHERE l.{s_psp} = %(psp)s AND l.{s_ref} = d0.ref AND l.{s_type} = d0.ttype
          AND l.{s_occurred} >= %(wide_start)s AND l.{s_occurred} < %(wide_end)s
        GROUP BY 1
    ) AS y
    WHERE d0.s_mixed OR (d0.kind = 'duplicate_in_statement' AND d0.statement_currency <> d0.currency)
),
d AS (
    SELECT kind, ref, ttype, g_status, s_status,
           CASE WHEN g_mixed
                THEN COALESCE((SELECT x.total FROM x WHERE x.ref = d0.ref AND x.ttype = d0.ttype
                               AND x.side = 'g' AND x.currency = d0.currency), 0)
                ELSE g_total END AS g_total,
           CASE WHEN s_mixed
                THEN COALESCE((SELECT x.total FROM x WHERE x.ref = d0.ref AND x.ttype = d0.ttype
                               AND x.side = 's' AND x.currency = d0.currency), 0)
                ELSE s_total END AS s_total,
           CASE WHEN amount_currency = currency THEN amount
                ELSE COALESCE((SELECT x.extra FROM x WHERE x.ref = d0.ref AND x.ttype = d0.ttype
                               AND x.side = d0.side AND x.currency = d0.currency), 0)
           END AS divergent_amount_minor,
           currency, gn, sn, g_first_id, statement_currency,
           CASE WHEN amount_currency IS DISTINCT FROM currency AND kind IN ('duplicate_in_gateway',
                                                                          'duplicate_in_statement')
                THEN (SELECT jsonb_object_agg(x.currency, x.extra) FROM x
                      WHERE x.ref = d0.ref AND x.ttype = d0.ttype AND x.side = d0.side
                        AND x.currency IS DISTINCT FROM d0.currency AND x.extra <> 0)
           END AS other_amounts
    FROM d0
)"""

#: ``parts``: each divergent key's count in its currency and its amounts in their own
#: currencies (DESIGN 3a), from a relation ``{rel}`` with the report's columns; the
#: summaries group it by ``(currency, kind)``
PARTS_SQL = """
    SELECT {rel}.currency, {rel}.kind, 1 AS n, {rel}.divergent_amount_minor AS amount FROM {rel}
    UNION ALL
    SELECT o.key, {rel}.kind, 0, o.value::bigint
    FROM {rel} CROSS JOIN LATERAL jsonb_each_text({rel}.other_amounts) AS o
    WHERE {rel}.other_amounts IS NOT NULL"""


#: each side's aggregates of one key ``(ref, ttype)``: row count, total, smallest id, status
#: and currency range, ``in_window`` when a row lies in ``[start, end)`` (the gateway's rows
#: as ``t``, the statement's lines as ``l``); every path that classifies keys aggregates them
#: this way (:func:`side_aggregates`, the cycle store's per-key probes)
GATEWAY_AGGREGATES = """count(*) AS n,
           sum(t.{t_amount})::bigint AS total,
           min(t.{t_id})::bigint AS first_id,
           min(t.{t_status} COLLATE "C") AS status,
           min(upper(t.{t_currency}) COLLATE "C") AS currency,
           max(upper(t.{t_currency}) COLLATE "C") AS currency_hi,
           bool_or(t.{t_created} >= %(start)s AND t.{t_created} < %(end)s) AS in_window"""
STATEMENT_AGGREGATES = """count(*) AS n,
           sum(l.{s_amount})::bigint AS total,
           min(l.{s_id})::bigint AS first_id,
           min(COALESCE(%(status_map)s::jsonb ->> l.{s_status}, l.{s_status}) COLLATE "C") AS status,
           min(upper(l.{s_currency}) COLLATE "C") AS currency,
           max(upper(l.{s_currency}) COLLATE "C") AS currency_hi,
           bool_or(l.{s_occurred} >= %(start)s AND l.{s_occurred} < %(end)s) AS in_window"""

#: ``g`` / ``s``: each side's aggregates per key over the widened range. One template for
#: both paths: the one-shot query uses it as ``g`` / ``s``, the cycle store as ``g0`` / ``s0``
#: with ``all_in`` (every row of the key inside the cycle); see :func:`side_aggregates`
SIDE_AGGREGATES = """{g} AS (
    SELECT i.{i_ref} AS ref,
           t.{t_type} AS ttype,
           {g_columns}{g_all_in}
    FROM {transactions} AS t
    JOIN {intents} AS i ON i.{i_id} = t.{t_intent}
    WHERE i.{i_provider} = %(psp)s
      AND t.{t_created} >= %(wide_start)s AND t.{t_created} < %(wide_end)s{g_part}
    GROUP BY 1, 2
),
{s} AS (
    SELECT l.{s_ref} AS ref,
           l.{s_type} AS ttype,
           {s_columns}{s_all_in}
    FROM {statements} AS l
    WHERE l.{s_psp} = %(psp)s
      AND l.{s_occurred} >= %(wide_start)s AND l.{s_occurred} < %(wide_end)s{s_part}
    GROUP BY 1, 2
)"""

#: ``all_in`` of :func:`side_aggregates`: every row of the key lies in ``[start, end)``
GATEWAY_ALL_IN = """,
           bool_and(t.{t_created} >= %(start)s AND t.{t_created} < %(end)s) AS all_in"""
STATEMENT_ALL_IN = """,
           bool_and(l.{s_occurred} >= %(start)s AND l.{s_occurred} < %(end)s) AS all_in"""


def aggregate_columns(m: TableMapping) -> dict[str, sql.Composed]:
    """:data:`GATEWAY_AGGREGATES` and :data:`STATEMENT_AGGREGATES` for the mapping ``m``, as
    ``g_columns`` / ``s_columns`` (placeholders of a template)."""
    names = sql_names(m)
    return {
        "g_columns": sql.SQL(GATEWAY_AGGREGATES).format(**names),
        "s_columns": sql.SQL(STATEMENT_AGGREGATES).format(**names),
    }


def _key_part(ref: sql.Composable, partitioned: bool) -> sql.Composable:
    """The predicate that keeps one key-hash part of a side's rows (both sides hash the same
    reference, so a key's rows on both sides fall in the same part); nothing when the
    classification is not split. Written as the call ``int4eq(...)`` rather than the operator
    ``=``: the planner has no statistics for the expression and estimates an operator's
    equality at 0.5% of the rows, which turns the part's hash aggregates into sorts and merge
    joins sized for a few thousand rows; a boolean function call is estimated at a third,
    close to a part's real share."""
    if not partitioned:
        return sql.SQL("")
    return sql.SQL(
        "\n      AND int4eq(mod(hashtext({}::text) & 2147483647, %(key_parts)s), %(key_part)s)"
    ).format(ref)


def side_aggregates(
    m: TableMapping, *, g: str = "g", s: str = "s", all_in: bool = False, partitioned: bool = False
) -> sql.Composed:
    """:data:`SIDE_AGGREGATES` named ``g`` / ``s``; with ``all_in`` each side also says
    whether every row of the key lies in ``[start, end)`` (the cycle store's locality).

    ``partitioned``: only the keys whose reference hashes to part ``%(key_part)s`` of
    ``%(key_parts)s`` (:func:`split_params`); the parts are disjoint and together are every
    key, so the union of the parts' classifications is the whole one (a long window is
    classified by several connections at once, hooks/_key_parts.py)."""
    names = sql_names(m)
    # the CTE names are this module's own words, never input
    return sql.SQL(SIDE_AGGREGATES).format(
        g=sql.SQL(g),
        s=sql.SQL(s),
        g_part=_key_part(sql.SQL("i.{}").format(names["i_ref"]), partitioned),
        s_part=_key_part(sql.SQL("l.{}").format(names["s_ref"]), partitioned),
        g_all_in=sql.SQL(GATEWAY_ALL_IN if all_in else "").format(**names),
        s_all_in=sql.SQL(STATEMENT_ALL_IN if all_in else "").format(**names),
        **aggregate_columns(m),
        **names,
    )


def _classified_cte(m: TableMapping, *, partitioned: bool = False) -> sql.Composed:
    """CTEs ``g`` / ``s`` (per-key aggregates of each side, :func:`side_aggregates`), ``j``
    (joined keys in scope that do not match cleanly), ``c`` (each key with its kind, NULL when
    it matches) and ``d`` (divergent keys with their amount).

    Performance (benchmarks/run.py, docs/benchmarks.md): the aggregates keep only scalar
    states (the first row's amount of a duplicate key is read by primary key in ``d``, for
    duplicate keys only, instead of a per-row ``min(ARRAY[id, amount])``), and ``j`` drops
    cleanly matching keys with a few comparisons before the classification ``CASE``."""
    return sql.SQL("""
{sides},
{j},
{classify}""").format(
        sides=side_aggregates(m, partitioned=partitioned),
        j=sql.SQL(JOIN_CTE),
        classify=sql.SQL(CLASSIFY_CTES).format(**sql_names(m)),
    )


def divergence_report_query(m: TableMapping, *, partitioned: bool = False) -> sql.Composed:
    """One row per divergent key, ordered by kind then key; columns :data:`REPORT_COLUMNS`.
    ``partitioned``: the keys of one part only (:func:`side_aggregates`), in the same order."""
    return sql.SQL(
        """WITH {ctes}
SELECT kind, ref, ttype, g_status, s_status, g_total, s_total,
       divergent_amount_minor, currency, gn, sn, g_first_id, statement_currency, other_amounts
FROM d
ORDER BY array_position(%(kinds)s::text[], kind), ref COLLATE "C", ttype COLLATE "C"
"""
    ).format(ctes=_classified_cte(m, partitioned=partitioned))


#: the formats the server writes a report in (:func:`report_copy_query`)
COPY_FORMATS = ("jsonl", "csv")


def _report_fields(report: sql.Composable) -> sql.Composed:
    """The report's fields (:data:`REPORT_FIELDS`) of a report statement's rows, in its order."""
    columns = sql.SQL(", ").join(map(sql.Identifier, REPORT_COLUMNS))
    fields = sql.SQL(", ").join(map(sql.Identifier, REPORT_FIELDS))
    return sql.SQL("SELECT {fields} FROM ({report}) AS r ({columns})").format(
        fields=fields, report=report, columns=columns
    )


def report_json_lines_query(report: sql.Composable) -> sql.Composed:
    """A report statement's rows as ``(kind, reference, type, JSON line)``, in its order: what
    a split report's parts are merged on (:func:`merge_report_parts`), and the line
    :func:`report_copy_query` writes for ``jsonl``."""
    return sql.SQL(
        "SELECT f.kind, f.provider_reference, f.transaction_type, row_to_json(f)::text FROM ({rows}) AS f"
    ).format(rows=_report_fields(report))


def report_copy_query(report: sql.Composable, fmt: str) -> sql.Composed:
    """``COPY ... TO STDOUT`` of a report statement (columns :data:`REPORT_COLUMNS`, in its
    order) as the lines ``report.render_rows`` writes: ``jsonl``, one compact JSON object per
    row with the report's fields (``row_to_json``: no spaces, nulls kept, non-ASCII as is);
    ``csv``, a header and the fields, quoted only where needed. The JSON lines travel as CSV
    with a delimiter and quote that JSON text never holds (control characters are escaped in
    JSON), so COPY neither quotes nor escapes them."""
    rows = _report_fields(report)
    if fmt == "jsonl":
        return sql.SQL(
            "COPY (SELECT row_to_json(f)::text FROM ({rows}) AS f)"
            " TO STDOUT (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')"
        ).format(rows=rows)
    if fmt == "csv":
        return sql.SQL("COPY ({rows}) TO STDOUT (FORMAT csv, HEADER)").format(rows=rows)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(COPY_FORMATS)}")


def divergence_by_kind_query(m: TableMapping, *, partitioned: bool = False) -> sql.Composed:
    """Per currency and kind: divergent keys counted in their key's currency, and divergent
    amounts in their own currencies (DESIGN 3a): rows ``(currency, kind, count, amount)``.

    A ``(currency, kind)`` with no key and a zero amount (extra copies in that currency whose
    amounts cancel out across keys) is no row, here as in the cycle store's reader, which
    cannot tell such a group from one whose stored keys were all re-classified live.

    ``partitioned``: one part's groups, zero groups kept (a part's extra copies may cancel
    another's): :func:`merge_by_kind` adds the parts up and then drops the zero groups."""
    return sql.SQL(
        """WITH {ctes}
SELECT currency, kind, sum(n)::bigint, sum(amount)::bigint
FROM ({parts}) AS p
GROUP BY 1, 2{having}"""
    ).format(
        ctes=_classified_cte(m, partitioned=partitioned),
        parts=sql.SQL(PARTS_SQL.format(rel="d")),
        having=sql.SQL("" if partitioned else "\nHAVING sum(n) <> 0 OR sum(amount) <> 0"),
    )


def merge_by_kind(parts: Sequence[Sequence[tuple[Any, ...]]]) -> list[tuple[Any, ...]]:
    """The rows of :func:`divergence_by_kind_query` from its parts' rows: counts and amounts
    added per ``(currency, kind)``, groups with no key and a zero amount dropped."""
    totals: dict[tuple[Any, Any], list[int]] = {}
    for rows in parts:
        for currency, kind, n, amount in rows:
            group = totals.setdefault((currency, kind), [0, 0])
            group[0] += n
            group[1] += amount
    return [(c, k, n, a) for (c, k), (n, a) in totals.items() if n != 0 or a != 0]


def merge_report_parts(
    parts: Iterable[Iterable[Sequence[Any]]], kinds: Sequence[str]
) -> Iterator[Sequence[Any]]:
    """The rows of :func:`divergence_report_query` from its parts' rows, each part in the
    report's order (kind in the order of ``kinds``, then reference and type in byte order,
    which is ``COLLATE "C"``'s order and Python's order of ``str``), merged lazily."""
    order = {kind: i for i, kind in enumerate(kinds)}
    return heapq.merge(*parts, key=lambda r: (order[r[0]], r[1], r[2]))


def split_params(params: dict[str, Any], part: int, parts: int) -> dict[str, Any]:
    """``params`` of a partitioned classification for part ``part`` of ``parts``."""
    if not 0 <= part < parts:
        raise ValueError(f"part {part} is not one of {parts} parts")
    return {**params, "key_part": part, "key_parts": parts}


def live_rows_estimate_query(m: TableMapping) -> sql.Composed:
    """The rows a live classification reads (both sides, the widened window), for
    ``EXPLAIN``: the planner's estimate decides how many connections share the work."""
    return sql.SQL(
        """SELECT 1 FROM {transactions} AS t JOIN {intents} AS i ON i.{i_id} = t.{t_intent}
WHERE i.{i_provider} = %(psp)s AND t.{t_created} >= %(wide_start)s AND t.{t_created} < %(wide_end)s
UNION ALL
SELECT 1 FROM {statements} AS l
WHERE l.{s_psp} = %(psp)s AND l.{s_occurred} >= %(wide_start)s AND l.{s_occurred} < %(wide_end)s"""
    ).format(**sql_names(m))


def gateway_totals_query(m: TableMapping) -> sql.Composed:
    """Every gateway row of the PSP created in ``[start, end)``, per currency: rows
    ``(currency, count, amount as stored)``."""
    return sql.SQL(
        """SELECT upper(t.{t_currency}) COLLATE "C", count(*)::bigint, COALESCE(sum(t.{t_amount}), 0)::bigint
FROM {transactions} AS t JOIN {intents} AS i ON i.{i_id} = t.{t_intent}
WHERE i.{i_provider} = %(psp)s AND t.{t_created} >= %(start)s AND t.{t_created} < %(end)s
GROUP BY 1"""
    ).format(**sql_names(m))


def summary_currencies(totals: list[tuple[Any, ...]], by_kind: list[tuple[Any, ...]]) -> set[str]:
    """The currencies of a summary's rows (:func:`gateway_totals_query`,
    :func:`divergence_by_kind_query`); the rates of those other than the reporting currency
    are read with ``fx_queries.rates_in_force_query``."""
    return ({r[0] for r in totals} | {r[0] for r in by_kind}) - {None}


def snapshot_copy_query(m: TableMapping) -> sql.Composed:
    """The runbook's snapshot query (Investigação 1) as ``COPY ... TO STDOUT`` CSV.

    Runbook columns first, then the transaction id, currency and creation time that a
    correction needs. ``BETWEEN`` of the runbook becomes the half-open window.
    """
    return sql.SQL(
        """COPY (
    SELECT i.{i_ref} AS provider_reference, t.{t_type} AS transaction_type, t.{t_status} AS status,
           t.{t_amount} AS amount_minor, t.{t_processed} AS processed_at,
           t.{t_id} AS transaction_id, t.{t_currency} AS currency, t.{t_created} AS created_at
    FROM {transactions} AS t JOIN {intents} AS i ON i.{i_id} = t.{t_intent}
    WHERE i.{i_provider} = %(psp)s AND t.{t_created} >= %(start)s AND t.{t_created} < %(end)s
    ORDER BY t.{t_created}, t.{t_id}
) TO STDOUT WITH (FORMAT csv, HEADER true)"""
    ).format(**sql_names(m))


def gateway_status_counts_query(m: TableMapping) -> sql.Composed:
    """Gateway side of the ledger integrity check (Investigação 3): rows ``(status,
    currency, count, amount_minor)`` of the PSP's transactions created in ``[start, end)``,
    each amount within its own currency (the ledger's counterpart: :func:`ledger_totals_query`)."""
    return sql.SQL(
        """SELECT t.{t_status}, upper(t.{t_currency}) COLLATE "C", count(*)::bigint,
       COALESCE(sum(t.{t_amount}), 0)::bigint
FROM {transactions} AS t JOIN {intents} AS i ON i.{i_id} = t.{t_intent}
WHERE i.{i_provider} = %(psp)s AND t.{t_created} >= %(start)s AND t.{t_created} < %(end)s
GROUP BY 1, 2 ORDER BY 1, 2"""
    ).format(**sql_names(m))


def ledger_totals_query(m: TableMapping) -> sql.Composed:
    """The ledger's entries of the PSP with ``occurred_at`` in ``[start, end)`` per status and
    currency (the runbook's ledger query, by currency too): rows ``(status, currency, count,
    amount_minor)``, each amount within its own currency; a NULL currency stays NULL."""
    return sql.SQL(
        """SELECT {led_status}, upper({led_currency}) COLLATE "C", count(*)::bigint,
       COALESCE(sum({led_amount}), 0)::bigint
FROM {ledger}
WHERE {led_psp} = %(psp)s AND {led_occurred} >= %(start)s AND {led_occurred} < %(end)s
GROUP BY 1, 2"""
    ).format(**sql_names(m))


def recovery_sides_query(m: TableMapping) -> sql.Composed:
    """The gateway's and the statement's figures of a window per status and currency, the
    ledger's counterparts in the recovery criterion: rows ``(side, status, currency, count,
    amount_minor)`` (``side``: ``gateway`` | ``statement``), the statement's statuses as the
    PSP wrote them.

    Gateway: every row created in ``[start, end)``. Statement: the lines of the window's
    transactions — a line whose key has a gateway row in the widened range (the match grace)
    counts at the time of the key's earliest gateway row, any other line at its own
    ``occurred_at``. So a capture the gateway (and the ledger, which books the gateway's
    time) recorded at 13:59:59 and the PSP at 14:00:01 is in the same window on every side,
    as the divergence classification matches it (DESIGN 3)."""
    return sql.SQL(
        """WITH k AS (
    SELECT i.{i_ref} AS ref, t.{t_type} AS ttype, min(t.{t_created}) AS at
    FROM {transactions} AS t JOIN {intents} AS i ON i.{i_id} = t.{t_intent}
    WHERE i.{i_provider} = %(psp)s AND t.{t_created} >= %(wide_start)s AND t.{t_created} < %(wide_end)s
    GROUP BY 1, 2
)
SELECT 'gateway', t.{t_status}, upper(t.{t_currency}) COLLATE "C", count(*)::bigint,
       COALESCE(sum(t.{t_amount}), 0)::bigint
FROM {transactions} AS t JOIN {intents} AS i ON i.{i_id} = t.{t_intent}
WHERE i.{i_provider} = %(psp)s AND t.{t_created} >= %(start)s AND t.{t_created} < %(end)s
GROUP BY 2, 3
UNION ALL
SELECT 'statement', l.{s_status}, upper(l.{s_currency}) COLLATE "C", count(*)::bigint,
       COALESCE(sum(l.{s_amount}), 0)::bigint
FROM {statements} AS l LEFT JOIN k ON k.ref = l.{s_ref} AND k.ttype = l.{s_type}
WHERE l.{s_psp} = %(psp)s AND l.{s_occurred} >= %(wide_start)s AND l.{s_occurred} < %(wide_end)s
  AND COALESCE(k.at, l.{s_occurred}) >= %(start)s AND COALESCE(k.at, l.{s_occurred}) < %(end)s
GROUP BY 2, 3"""
    ).format(**sql_names(m))


def psp_exists_query(m: TableMapping) -> sql.Composed:
    return sql.SQL("SELECT EXISTS (SELECT 1 FROM {intents} WHERE {i_provider} = %(psp)s)").format(
        **sql_names(m)
    )


def distinct_psps_query(m: TableMapping) -> sql.Composed:
    """Distinct providers by a skip scan over the provider index (cheap on large tables)."""
    return sql.SQL(
        """WITH RECURSIVE p AS (
    (SELECT {i_provider} AS v FROM {intents} ORDER BY 1 LIMIT 1)
    UNION ALL
    SELECT (SELECT {i_provider} FROM {intents} WHERE {i_provider} > p.v ORDER BY 1 LIMIT 1)
    FROM p WHERE p.v IS NOT NULL
)
SELECT v FROM p WHERE v IS NOT NULL LIMIT %(limit)s"""
    ).format(**sql_names(m))


def latest_success_query(m: TableMapping) -> sql.Composed:
    """End of the PSP's latest successful reconciliation cycle at or before a reference time."""
    return sql.SQL(
        """SELECT max({r_cycle_end}) FROM {logs}
WHERE {r_psp} = %(psp)s AND {r_status} = 'success' AND {r_cycle_end} <= %(reference)s"""
    ).format(**sql_names(m))


def cycle_statuses_query(m: TableMapping) -> sql.Composed:
    """Latest log row of each cycle of the PSP that starts inside the window."""
    return sql.SQL(
        """SELECT DISTINCT ON ({r_cycle_start}) {r_cycle_start}, {r_cycle_end}, {r_status},
       {r_amount}::bigint, {r_count}::bigint, {r_created}
FROM {logs}
WHERE {r_psp} = %(psp)s AND {r_cycle_start} >= %(start)s AND {r_cycle_start} < %(end)s
ORDER BY {r_cycle_start}, {r_created} DESC, {r_id} DESC"""
    ).format(**sql_names(m))


# -- reconciliation cycle writes (fetch_psp_statements / match_transactions) ----------


def advisory_xact_lock_query() -> sql.SQL:
    """A transaction-scoped advisory lock on ``%(lock_key)s`` (any text, hashed to bigint).

    Serialises writers of the same PSP statement or cycle log: two runs of the same cycle
    (the hourly one and a reprocess) must not interleave a delete and a copy.
    """
    return sql.SQL("SELECT pg_advisory_xact_lock(hashtextextended(%(lock_key)s::text, 0))")


def delete_statement_lines_query(m: TableMapping) -> sql.Composed:
    """Remove the PSP's statement lines that occurred in ``[start, end)``."""
    return sql.SQL(
        "DELETE FROM {statements}"
        " WHERE {s_psp} = %(psp)s AND {s_occurred} >= %(start)s AND {s_occurred} < %(end)s"
    ).format(**sql_names(m))


#: the column order of :func:`copy_statement_lines_query`
STATEMENT_COPY_COLUMNS = (
    "psp",
    "provider_reference",
    "transaction_type",
    "status",
    "amount_minor",
    "currency",
    "occurred_at",
    "statement_id",
)


def copy_statement_lines_query(m: TableMapping) -> sql.Composed:
    """``COPY psp_statement_lines (...) FROM STDIN`` in :data:`STATEMENT_COPY_COLUMNS` order."""
    st = m.statements
    return sql.SQL("COPY {statements} ({columns}) FROM STDIN").format(
        statements=st.table.ident,
        columns=sql.SQL(", ").join(st.col(name) for name in STATEMENT_COPY_COLUMNS),
    )


def open_cycle_log_query(m: TableMapping) -> sql.Composed:
    """The latest ``running`` log row of the PSP's cycle, locked for its update."""
    return sql.SQL(
        """SELECT {r_id} FROM {logs}
WHERE {r_psp} = %(psp)s AND {r_cycle_start} = %(start)s AND {r_cycle_end} = %(end)s AND {r_status} = 'running'
ORDER BY {r_created} DESC, {r_id} DESC
LIMIT 1
FOR UPDATE"""
    ).format(**sql_names(m))


def insert_cycle_log_query(m: TableMapping) -> sql.Composed:
    """A new ``payment_reconciliation_logs`` row for a cycle."""
    return sql.SQL(
        """INSERT INTO {logs} ({r_psp}, {r_cycle_start}, {r_cycle_end}, {r_status}, {r_amount}, {r_count},
    {r_notes}, {r_created})
VALUES (%(psp)s, %(start)s, %(end)s, %(status)s, %(amount)s, %(count)s, %(notes)s, clock_timestamp())
RETURNING {r_id}"""
    ).format(**sql_names(m))


def update_cycle_log_query(m: TableMapping) -> sql.Composed:
    """Move a log row to a new status and figures; ``notes`` are appended, never replaced
    (the runbook's traceability)."""
    return sql.SQL(
        """UPDATE {logs}
SET {r_status} = %(status)s,
    {r_amount} = %(amount)s,
    {r_count} = %(count)s,
    {r_notes} = CASE
        WHEN %(notes)s::text = '' THEN {r_notes}
        WHEN COALESCE({r_notes}, '') = '' THEN %(notes)s::text
        ELSE {r_notes} || E'\\n' || %(notes)s::text
    END
WHERE {r_id} = %(id)s"""
    ).format(**sql_names(m))


#: the provider's own per-PSP pause/resume state (schema ``recon``, see schema/migrations.py)
CONTROLS_TABLE = sql.Identifier("recon", "controls")


def controls_table_exists_query() -> sql.SQL:
    return sql.SQL("SELECT to_regclass('recon.controls') IS NOT NULL")


def control_state_query() -> sql.Composed:
    """State (``active``/``paused``), reason and actor of a PSP in ``recon.controls``."""
    return sql.SQL("SELECT state, reason, actor FROM {controls} WHERE psp = %(psp)s").format(
        controls=CONTROLS_TABLE
    )


# -- the provider's own recon schema (fixed names: the provider owns it) ----------------


def open_incident_activity_query() -> sql.SQL:
    """The PSP's open incident with what was done about it (the divergence watch's rule,
    :func:`~airflow_recon_provider.reconciliation.detection.watch_fires_on_open_incident`):
    ``incident_id, opened_by, finance_dry_runs, scope_runs, real_run_claims, lease_holder,
    watch_alerts``. Parameters: ``psp``, ``report_step``, ``scope_step``, ``watch_step``,
    ``lease_events`` (a list). No row: the PSP has no open incident."""
    return sql.SQL(
        """SELECT i.incident_id, i.opened_by,
    COALESCE((SELECT array_agg(e.details -> 'dry_run' ->> 'run_id') FROM recon.incident_events e
              WHERE e.incident_id = i.incident_id AND e.step = %(report_step)s), '{}') AS finance_dry_runs,
    COALESCE((SELECT array_agg(DISTINCT e.run_id) FROM recon.incident_events e
              WHERE e.incident_id = i.incident_id AND e.step = %(scope_step)s
                AND e.run_id IS NOT NULL), '{}') AS scope_runs,
    (SELECT count(*) FROM recon.remediation_lease_events l
     WHERE l.psp = i.psp AND l.incident_id = i.incident_id
       AND l.event = ANY(%(lease_events)s)) AS real_run_claims,
    (SELECT l.dag_id || ' run ' || l.run_id FROM recon.remediation_leases l
     WHERE l.psp = i.psp) AS lease_holder,
    (SELECT count(*) FROM recon.incident_events e
     WHERE e.incident_id = i.incident_id AND e.step = %(watch_step)s) AS watch_alerts
FROM recon.incidents i WHERE i.psp = %(psp)s AND i.state <> 'closed'
ORDER BY i.opened_at DESC LIMIT 1"""
    )


def open_incident_activity_params(psp: str) -> dict[str, Any]:
    """The bound values of :func:`open_incident_activity_query` for ``psp``."""
    return {
        "psp": psp,
        "report_step": FinanceReportStep.REPORTED,
        "scope_step": RemediationStep.SCOPE,
        "watch_step": WATCH_ALERT_STEP,
        "lease_events": sorted(REAL_RUN_LEASE_EVENTS),
    }


def open_incident_activity(row: Sequence[Any] | None) -> OpenIncidentActivity | None:
    """The row of :func:`open_incident_activity_query` as the domain reads it."""
    if row is None:
        return None
    incident_id, opened_by, dry_runs, scope_runs, claims, holder, alerts = row
    return OpenIncidentActivity.of(
        incident_id,
        opened_by,
        finance_dry_runs=list(dry_runs or []),
        scope_runs=list(scope_runs or []),
        real_run_claims=claims,
        lease_holder=holder,
        watch_alerts=alerts,
    )


def latest_cycle_states_query(m: TableMapping) -> sql.Composed:
    """States of the PSP's latest ``%(n)s`` reconciled cycles ending at or before
    ``%(reference)s``, newest first (the latest log row of each cycle counts)."""
    return sql.SQL(
        """SELECT status FROM (
    SELECT DISTINCT ON ({r_cycle_start}) {r_cycle_start} AS cycle_start, {r_status} AS status
    FROM {logs}
    WHERE {r_psp} = %(psp)s AND {r_cycle_end} <= %(reference)s
    ORDER BY {r_cycle_start} DESC, {r_created} DESC, {r_id} DESC
) AS latest
ORDER BY cycle_start DESC LIMIT %(n)s"""
    ).format(**sql_names(m))
