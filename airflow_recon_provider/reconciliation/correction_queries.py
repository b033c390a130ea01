"""SQL of the data correction (runbook, Mitigação 2 "Correção de Dados").

Composed with ``psycopg.sql``: the runbook's tables and columns come from the
:class:`TableMapping` as identifiers, every value is a bound parameter. The provider's own
``recon`` tables have fixed names (the provider owns them).
"""

from __future__ import annotations

from psycopg import sql

from airflow_recon_provider.reconciliation.mapping import TableMapping
from airflow_recon_provider.reconciliation.queries import divergence_report_query, sql_names

PROPOSALS_TABLE = sql.Identifier("recon", "correction_proposals")
CORRECTIONS_TABLE = sql.Identifier("recon", "corrections")
REQUESTS_TABLE = sql.Identifier("recon", "correction_requests")
#: a session-local table that holds a dry run's proposals until its key is known
DRY_RUN_TEMP = sql.Identifier("recon_correction_dry_run")

#: the columns of a proposal, in the order of :func:`copy_dry_run_query`
PROPOSAL_COLUMNS = (
    "position",
    "transaction_id",
    "provider_reference",
    "transaction_type",
    "kind",
    "amount_minor",
    "currency",
    "before_status",
    "before_processed_at",
    "after_status",
)


def candidates_query(m: TableMapping) -> sql.Composed:
    """Each divergent key of the report (its 14 columns) followed by its gateway row as it is
    now — ``id, status, processed_at, amount_minor, currency, created_at`` — when the key has
    exactly one gateway row (NULLs otherwise). One statement: the report and the rows come
    from the same snapshot. Ordered by kind (canonical order), reference and type."""
    return sql.SQL(
        """WITH r (kind, ref, ttype, g_status, s_status, g_total, s_total, divergent_amount_minor,
         currency, gn, sn, g_first_id, statement_currency, other_amounts) AS (
{report}
)
SELECT r.kind, r.ref, r.ttype, r.g_status, r.s_status, r.g_total, r.s_total,
       r.divergent_amount_minor, r.currency, r.gn, r.sn, r.g_first_id,
       r.statement_currency, r.other_amounts,
       t.{t_id}, t.{t_status}, t.{t_processed}, t.{t_amount}::bigint, t.{t_currency}, t.{t_created}
FROM r
LEFT JOIN {transactions} AS t ON r.gn = 1 AND t.{t_id} = r.g_first_id
ORDER BY array_position(%(kinds)s::text[], r.kind), r.ref COLLATE "C", r.ttype COLLATE "C"
"""
    ).format(report=divergence_report_query(m), **sql_names(m))


def create_dry_run_temp_query() -> sql.Composed:
    return sql.SQL(
        """CREATE TEMP TABLE {temp} (
    position integer NOT NULL,
    transaction_id bigint NOT NULL,
    provider_reference text NOT NULL,
    transaction_type text NOT NULL,
    kind text NOT NULL,
    amount_minor bigint NOT NULL,
    currency text NOT NULL,
    before_status text NOT NULL,
    before_processed_at timestamptz,
    after_status text NOT NULL
) ON COMMIT DROP"""
    ).format(temp=DRY_RUN_TEMP)


def copy_dry_run_query() -> sql.Composed:
    return sql.SQL("COPY {temp} ({columns}) FROM STDIN").format(
        temp=DRY_RUN_TEMP, columns=sql.SQL(", ").join(map(sql.Identifier, PROPOSAL_COLUMNS))
    )


def store_proposals_query() -> sql.Composed:
    """Keep the dry run's proposals under their key; the same key again changes nothing."""
    columns = sql.SQL(", ").join(map(sql.Identifier, PROPOSAL_COLUMNS))
    return sql.SQL(
        """INSERT INTO {proposals} (correction_key, psp, run_id, incident_id, {columns})
SELECT %(key)s, %(psp)s, %(run_id)s, %(incident_id)s, {columns} FROM {temp}
ON CONFLICT (correction_key, transaction_id) DO NOTHING"""
    ).format(proposals=PROPOSALS_TABLE, temp=DRY_RUN_TEMP, columns=columns)


def load_proposals_query() -> sql.Composed:
    return sql.SQL(
        """SELECT psp, transaction_id, provider_reference, transaction_type, kind, before_status,
       before_processed_at, after_status, amount_minor, currency
FROM {proposals} WHERE correction_key = %(key)s ORDER BY position, transaction_id"""
    ).format(proposals=PROPOSALS_TABLE)


def proposal_set_query() -> sql.Composed:
    """What a stored dry run was made for: one row per (PSP, incident) among its proposals,
    with their count (a well-formed set has exactly one)."""
    return sql.SQL(
        """SELECT psp, incident_id, count(*) FROM {proposals} WHERE correction_key = %(key)s
GROUP BY psp, incident_id ORDER BY psp, incident_id"""
    ).format(proposals=PROPOSALS_TABLE)


def store_request_query() -> sql.Composed:
    """Who asked for the correction set, stored with its dry run; a retry of the same run
    changes nothing."""
    return sql.SQL(
        """INSERT INTO {requests} (correction_key, run_id, requested_by, psp, incident_id)
VALUES (%(key)s, %(run_id)s, %(requested_by)s, %(psp)s, %(incident_id)s)
ON CONFLICT (correction_key, run_id) DO NOTHING"""
    ).format(requests=REQUESTS_TABLE)


def requesters_query() -> sql.Composed:
    return sql.SQL(
        "SELECT requested_by, run_id FROM {requests} WHERE correction_key = %(key)s"
        " ORDER BY requested_at, run_id"
    ).format(requests=REQUESTS_TABLE)


def incident_of_query() -> sql.SQL:
    """The PSP and state of an incident (none: it does not exist); locked against closing
    while a correction is applied under it."""
    return sql.SQL("SELECT psp, state FROM recon.incidents WHERE incident_id = %(incident_id)s FOR SHARE")


def park_notes_query() -> sql.Composed:
    """Keep the notes lines of corrections whose cycle has no ``payment_reconciliation_logs``
    row yet on their audit rows, with the cycle they wait for."""
    return sql.SQL(
        """UPDATE {corrections} AS c SET note_cycle_start = v.cycle_start, note_pending = v.note
FROM unnest(%(ids)s::bigint[], %(cycles)s::timestamptz[], %(notes)s::text[]) AS v (id, cycle_start, note)
WHERE c.correction_key = %(key)s AND c.transaction_id = v.id"""
    ).format(corrections=CORRECTIONS_TABLE)


def notes_pending_query() -> sql.SQL:
    """Whether this database keeps waiting correction notes (migration 9), and whether this
    role may take them."""
    return sql.SQL(
        """SELECT col.attname IS NOT NULL,
       col.attname IS NOT NULL AND has_column_privilege(col.attrelid, col.attnum, 'UPDATE')
FROM (SELECT 1) AS one
LEFT JOIN pg_attribute AS col
       ON col.attrelid = to_regclass('recon.corrections') AND col.attname = 'note_pending'"""
    )


def take_pending_notes_query() -> sql.Composed:
    """The waiting notes lines of a PSP's corrections in a cycle, in the order applied,
    marked as written (the caller appends them to the cycle's log row in the same
    transaction)."""
    return sql.SQL(
        """WITH pending AS (
    SELECT id, note_pending FROM {corrections}
    WHERE psp = %(psp)s AND note_pending IS NOT NULL
      AND note_cycle_start >= %(start)s AND note_cycle_start < %(end)s
    ORDER BY id
    FOR UPDATE
), cleared AS (
    UPDATE {corrections} AS c SET note_pending = NULL FROM pending AS p WHERE c.id = p.id
)
SELECT string_agg(note_pending, E'\\n' ORDER BY id) FROM pending"""
    ).format(corrections=CORRECTIONS_TABLE)


def lock_timeout_query() -> sql.SQL:
    """How long the apply waits for a lock (advisory or row) before giving up."""
    return sql.SQL("SELECT set_config('lock_timeout', %(lock_timeout)s, true), now()")


def already_applied_query() -> sql.Composed:
    return sql.SQL(
        "SELECT transaction_id FROM {corrections} "
        "WHERE correction_key = %(key)s AND transaction_id = ANY(%(ids)s::bigint[])"
    ).format(corrections=CORRECTIONS_TABLE)


def lock_targets_query(m: TableMapping) -> sql.Composed:
    """The target rows of the PSP, locked in id order (two appliers cannot deadlock)."""
    return sql.SQL(
        """SELECT t.{t_id}, t.{t_status}, t.{t_processed}, t.{t_created}
FROM {transactions} AS t JOIN {intents} AS i ON i.{i_id} = t.{t_intent}
WHERE t.{t_id} = ANY(%(ids)s::bigint[]) AND i.{i_provider} = %(psp)s
ORDER BY t.{t_id}
FOR UPDATE OF t"""
    ).format(**sql_names(m))


def update_targets_query(m: TableMapping) -> sql.Composed:
    """The runbook's ``UPDATE payment_transactions SET status = ..., processed_at = NOW()``,
    for a batch, and only where the row is still in its "before" state."""
    return sql.SQL(
        """UPDATE {transactions} AS t
SET {t_status} = v.after_status, {t_processed} = now()
FROM unnest(%(ids)s::bigint[], %(before_status)s::text[], %(before_processed_at)s::timestamptz[],
            %(after_status)s::text[]) AS v (id, before_status, before_processed_at, after_status)
WHERE t.{t_id} = v.id
  AND t.{t_status} = v.before_status
  AND t.{t_processed} IS NOT DISTINCT FROM v.before_processed_at
RETURNING t.{t_id}"""
    ).format(**sql_names(m))


def insert_audit_query() -> sql.Composed:
    """One ``recon.corrections`` row per corrected transaction, its amount with its currency
    (from the proposal: the gateway row's); a row of the same correction set and transaction
    already there makes the insert a no-op."""
    return sql.SQL(
        """INSERT INTO {corrections} (correction_key, incident_id, psp, transaction_id,
    provider_reference, transaction_type, kind, amount_minor, currency, before, after, requested_by,
    approved_by, run_id, applied_at)
SELECT %(key)s, %(incident_id)s, %(psp)s, v.id, v.ref, v.ttype, v.kind, v.amount, v.currency,
       jsonb_build_object('status', v.before_status, 'processed_at', v.before_processed_at),
       jsonb_build_object('status', v.after_status, 'processed_at', now()),
       %(requested_by)s, %(approved_by)s, %(run_id)s, now()
FROM unnest(%(ids)s::bigint[], %(refs)s::text[], %(ttypes)s::text[], %(kinds)s::text[],
            %(amounts)s::bigint[], %(currencies)s::text[], %(before_status)s::text[],
            %(before_processed_at)s::timestamptz[], %(after_status)s::text[])
     AS v (id, ref, ttype, kind, amount, currency, before_status, before_processed_at, after_status)
ON CONFLICT (correction_key, transaction_id) DO NOTHING
RETURNING transaction_id"""
    ).format(corrections=CORRECTIONS_TABLE)


def covering_logs_query(m: TableMapping) -> sql.Composed:
    """For each moment of the array ``%(at)s``, the PSP's latest
    ``payment_reconciliation_logs`` row covering it: ``(position of the moment from 1, log
    id)``, moments without a covering row left out (the moments keep the type they are
    passed with: a gateway whose ``created_at`` is a plain ``timestamp`` is compared as
    such). One statement for a whole correction set (the log index on ``(psp, cycle_start)``
    serves each moment); lock the rows with :func:`lock_logs_query`."""
    return sql.SQL(
        """SELECT moment.n, latest.id
FROM unnest(%(at)s) WITH ORDINALITY AS moment(at, n)
CROSS JOIN LATERAL (
    SELECT {r_id} AS id FROM {logs}
    WHERE {r_psp} = %(psp)s AND {r_cycle_start} <= moment.at AND {r_cycle_end} > moment.at
    ORDER BY {r_created} DESC, {r_id} DESC
    LIMIT 1
) AS latest"""
    ).format(**sql_names(m))


def lock_logs_query(m: TableMapping) -> sql.Composed:
    """Lock log rows ``%(ids)s`` in id order (the order every writer takes them in)."""
    return sql.SQL("SELECT {r_id} FROM {logs} WHERE {r_id} = ANY(%(ids)s) ORDER BY {r_id} FOR UPDATE").format(
        **sql_names(m)
    )


def append_log_notes_query(m: TableMapping) -> sql.Composed:
    """Append lines to a log row's notes; never replace them (runbook: rastreabilidade)."""
    return sql.SQL(
        """UPDATE {logs}
SET {r_notes} = CASE WHEN COALESCE({r_notes}, '') = '' THEN %(notes)s::text
                   ELSE {r_notes} || E'\\n' || %(notes)s::text END
WHERE {r_id} = %(id)s"""
    ).format(**sql_names(m))


def incident_event_query() -> sql.SQL:
    """An event on the incident's timeline, when the incident exists (``RETURNING id``)."""
    return sql.SQL(
        """INSERT INTO recon.incident_events (incident_id, step, outcome, actor, run_id, details)
SELECT %(incident_id)s, %(step)s, %(outcome)s, %(actor)s, %(run_id)s, %(details)s::jsonb
WHERE EXISTS (SELECT 1 FROM recon.incidents WHERE incident_id = %(incident_id)s)
RETURNING id"""
    )


__all__ = [
    "PROPOSAL_COLUMNS",
    "already_applied_query",
    "append_log_notes_query",
    "candidates_query",
    "copy_dry_run_query",
    "covering_logs_query",
    "create_dry_run_temp_query",
    "incident_event_query",
    "incident_of_query",
    "insert_audit_query",
    "load_proposals_query",
    "lock_logs_query",
    "lock_targets_query",
    "lock_timeout_query",
    "notes_pending_query",
    "park_notes_query",
    "proposal_set_query",
    "requesters_query",
    "store_proposals_query",
    "store_request_query",
    "take_pending_notes_query",
    "update_targets_query",
]
