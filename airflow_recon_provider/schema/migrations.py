"""Versioned, idempotent migrations of the provider's ``recon`` schema.

Each migration runs once, in its own transaction, under an advisory lock so that
two workers migrating at the same time do not race; re-running is a no-op.
The ``recon`` schema holds the provider's state: per-PSP controls (pause/resume),
incidents and their timeline, and the audit of every corrected transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from airflow_recon_provider.reconciliation.mapping import TableMapping

#: arbitrary constant: ``pg_advisory_xact_lock`` key of the recon migrations
_LOCK_KEY = 0x5EC0_0001


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def _install_cycle_store(conn: psycopg.Connection, mapping: TableMapping) -> None:
    """Key indexes and change-mark triggers on the classification's tables (see
    schema/cycle_store.py). Without those tables (a ledger-only database) the store
    stays disabled: no state row, readers classify live."""
    from airflow_recon_provider.reconciliation import cycle_store
    from airflow_recon_provider.schema import cycle_store as store_ddl

    tables = (mapping.intents.table, mapping.transactions.table, mapping.statements.table)
    schema_of = {}
    for table in tables:
        found = conn.execute(
            "SELECT n.nspname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE c.oid = to_regclass(%s)",
            (table.ident.as_string(conn),),
        ).fetchone()
        if not found:
            return
        schema_of[str(table)] = found[0]
    qualified = store_ddl.qualified_mapping(mapping, schema_of)
    for statement in store_ddl.key_index_ddl(mapping) + store_ddl.trigger_ddl(qualified):
        conn.execute(statement)
    conn.execute(
        "INSERT INTO recon.cycle_store_state (id, mapping_fingerprint, triggers_installed)"
        " VALUES (1, %s, true)"
        " ON CONFLICT (id) DO UPDATE SET mapping_fingerprint = EXCLUDED.mapping_fingerprint,"
        " triggers_installed = true, installed_at = now()",
        (cycle_store.mapping_fingerprint(mapping),),
    )


def install_cycle_store(conn: psycopg.Connection, mapping: TableMapping) -> None:
    """(Re)install the cycle store's key indexes and change triggers for ``mapping`` (e.g.
    after the mapping or the gateway tables changed); forgets every stored cycle, which were
    built for the old ones. Needs migration 5 (``migrate``)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("DELETE FROM recon.cycle_results")
        conn.execute("UPDATE recon.cycle_store_state SET triggers_installed = false")
        _install_cycle_store(conn, mapping)


def enable_cycle_store(conn: psycopg.Connection, mapping: TableMapping) -> bool:
    """Install the cycle store for ``mapping`` unless it already is (stored cycles kept);
    returns whether it was installed now.

    The store is opt-in (``airflow-recon migrate --cycle-store``): it puts statement-level
    triggers on the gateway's and the PSP statement tables (one grouped upsert per writing
    statement) and builds two key indexes on them without ``CONCURRENTLY`` (writes to each
    table wait while its index builds; create them concurrently beforehand on a busy
    primary: ``schema/cycle_store.py``'s ``key_index_ddl``). See benchmarks/levers.md.
    """
    from airflow_recon_provider.reconciliation import cycle_store

    installed = conn.execute(cycle_store.store_ready_query()).fetchone()[0]
    if installed == cycle_store.mapping_fingerprint(mapping):
        return False
    install_cycle_store(conn, mapping)
    return True


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "controls, incidents, incident events, corrections",
        """
CREATE TABLE IF NOT EXISTS recon.controls (
    psp          text PRIMARY KEY,
    state        text NOT NULL CHECK (state IN ('active', 'paused')),
    reason       text NOT NULL DEFAULT '',
    actor        text NOT NULL,
    incident_id  text,
    changed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS recon.control_events (
    id           bigserial PRIMARY KEY,
    psp          text NOT NULL,
    state        text NOT NULL CHECK (state IN ('active', 'paused')),
    reason       text NOT NULL DEFAULT '',
    actor        text NOT NULL,
    incident_id  text,
    run_id       text,
    changed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS recon.incidents (
    id                      bigserial PRIMARY KEY,
    incident_id             text NOT NULL UNIQUE,
    psp                     text NOT NULL,
    state                   text NOT NULL DEFAULT 'open'
                            CHECK (state IN ('open', 'mitigating', 'recovered', 'closed')),
    window_start            timestamptz,
    window_end              timestamptz,
    reason                  text,
    psp_ticket              text,
    divergent_amount_minor  bigint,
    divergent_count         bigint,
    divergence_pct          numeric(12, 4),
    opened_by               text NOT NULL,
    opened_at               timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    closed_at               timestamptz
);
-- one open incident per PSP: fire and clear are separate conditions
CREATE UNIQUE INDEX IF NOT EXISTS incidents_one_open_per_psp
    ON recon.incidents (psp) WHERE state <> 'closed';
CREATE TABLE IF NOT EXISTS recon.incident_events (
    id                      bigserial PRIMARY KEY,
    incident_id             text NOT NULL REFERENCES recon.incidents (incident_id),
    step                    text NOT NULL,
    outcome                 text NOT NULL,
    divergence_pct          numeric(12, 4),
    divergent_amount_minor  bigint,
    divergent_count         bigint,
    actor                   text NOT NULL,
    run_id                  text,
    details                 jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS incident_events_by_incident
    ON recon.incident_events (incident_id, created_at);
CREATE TABLE IF NOT EXISTS recon.corrections (
    id                bigserial PRIMARY KEY,
    correction_key    text NOT NULL,
    incident_id       text,
    psp               text NOT NULL,
    transaction_id    bigint NOT NULL,
    provider_reference text NOT NULL,
    transaction_type  text NOT NULL,
    kind              text NOT NULL,
    amount_minor      bigint NOT NULL,
    before            jsonb NOT NULL,
    after             jsonb NOT NULL,
    requested_by      text NOT NULL,
    approved_by       text NOT NULL,
    run_id            text NOT NULL,
    applied_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT corrections_requester_is_not_approver CHECK (requested_by <> approved_by),
    CONSTRAINT corrections_once UNIQUE (correction_key, transaction_id)
);
CREATE INDEX IF NOT EXISTS corrections_by_incident ON recon.corrections (incident_id);
""",
    ),
    Migration(
        2,
        "incident numbers, resumption estimate, closing report, finance notification log",
        """
-- INCIDENT-<n> numbers for incidents opened without an id; starts after any existing
-- INCIDENT-<n> so a generated id never collides with one given by hand
CREATE SEQUENCE IF NOT EXISTS recon.incident_number_seq AS bigint START WITH 1 MINVALUE 1;
SELECT setval('recon.incident_number_seq', m.n)
  FROM (SELECT max(substring(incident_id FROM '^INCIDENT-([0-9]{1,18})$')::bigint) AS n
          FROM recon.incidents) AS m
 WHERE m.n IS NOT NULL;
ALTER TABLE recon.incidents
    ADD COLUMN IF NOT EXISTS eta_resumption        timestamptz,
    ADD COLUMN IF NOT EXISTS recovered_at          timestamptz,
    ADD COLUMN IF NOT EXISTS communication_done_at timestamptz,
    ADD COLUMN IF NOT EXISTS closing_report_md     text,
    ADD COLUMN IF NOT EXISTS closing_report_html   text;
-- incidents closed before this migration were communicated by hand: no final notice now
UPDATE recon.incidents
   SET communication_done_at = COALESCE(closed_at, updated_at)
 WHERE state = 'closed' AND communication_done_at IS NULL;
-- one row per message per channel: what finance was told, when, and whether it arrived
CREATE TABLE IF NOT EXISTS recon.notifications (
    id              bigserial PRIMARY KEY,
    dedup_key       text NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('email', 'slack')),
    kind            text NOT NULL
                    CHECK (kind IN ('update', 'normalized', 'containment', 'closing_report')),
    incident_id     text REFERENCES recon.incidents (incident_id),
    psp             text NOT NULL,
    slot            timestamptz NOT NULL,
    recipient       text NOT NULL,
    subject         text NOT NULL DEFAULT '',
    body_text       text NOT NULL DEFAULT '',
    body_html       text NOT NULL DEFAULT '',
    slack_blocks    jsonb NOT NULL DEFAULT '[]'::jsonb,
    figures         jsonb,
    last_event_id   bigint,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'failed', 'superseded')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    response        jsonb NOT NULL DEFAULT '{}'::jsonb,
    superseded_by   bigint REFERENCES recon.notifications (id),
    run_id          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    CONSTRAINT notifications_once UNIQUE (dedup_key, channel)
);
CREATE INDEX IF NOT EXISTS notifications_by_incident
    ON recon.notifications (incident_id, channel, slot);
CREATE INDEX IF NOT EXISTS notifications_unsent
    ON recon.notifications (kind, channel) WHERE status IN ('pending', 'failed');
""",
    ),
    Migration(
        3,
        "correction proposals (the dry run a finance approval refers to)",
        """
-- the rows of each data-correction dry run, under its correction key: the approval and the
-- apply refer to exactly these rows and their "before" state, whichever worker runs them
CREATE TABLE IF NOT EXISTS recon.correction_proposals (
    correction_key       text NOT NULL,
    transaction_id       bigint NOT NULL,
    psp                  text NOT NULL,
    position             integer NOT NULL,
    provider_reference   text NOT NULL,
    transaction_type     text NOT NULL,
    kind                 text NOT NULL,
    amount_minor         bigint NOT NULL,
    currency             text NOT NULL DEFAULT '',
    before_status        text NOT NULL,
    before_processed_at  timestamptz,
    after_status         text NOT NULL,
    run_id               text NOT NULL,
    incident_id          text,
    proposed_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT correction_proposals_pkey PRIMARY KEY (correction_key, transaction_id)
);
CREATE INDEX IF NOT EXISTS correction_proposals_by_position
    ON recon.correction_proposals (correction_key, position);
""",
    ),
    Migration(
        4,
        "control messages (pause/resume of a PSP) in the notification log; control history by PSP",
        """
-- the incidents channel hears every pause and resume of a PSP; logged like every message
ALTER TABLE recon.notifications DROP CONSTRAINT IF EXISTS notifications_kind_check;
ALTER TABLE recon.notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('update', 'normalized', 'containment', 'closing_report', 'control'));
CREATE INDEX IF NOT EXISTS control_events_by_psp ON recon.control_events (psp, id);
""",
    ),
    Migration(
        5,
        "stored per-cycle classification and change marks (triggers: enable_cycle_store, opt-in)",
        """
CREATE TABLE IF NOT EXISTS recon.cycle_marks (
    psp          text NOT NULL,
    cycle_start  timestamptz NOT NULL,
    last_xid     xid8 NOT NULL,
    changed_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (psp, cycle_start)
);
CREATE TABLE IF NOT EXISTS recon.cycle_results (
    psp                   text NOT NULL,
    cycle_start           timestamptz NOT NULL,
    cycle_end             timestamptz NOT NULL,
    grace_seconds         bigint NOT NULL,
    status_mapping        jsonb NOT NULL,
    mapping_fingerprint   text NOT NULL,
    computed_snapshot     pg_snapshot NOT NULL,
    computed_at           timestamptz NOT NULL,
    gateway_count         bigint NOT NULL,
    gateway_amount_minor  bigint NOT NULL,
    straddler_count       bigint NOT NULL,
    PRIMARY KEY (psp, cycle_start)
);
CREATE TABLE IF NOT EXISTS recon.cycle_divergences (
    psp                     text NOT NULL,
    cycle_start             timestamptz NOT NULL,
    kind                    text NOT NULL,
    provider_reference      text NOT NULL,
    transaction_type        text NOT NULL,
    gateway_status          text,
    statement_status        text,
    gateway_amount_minor    bigint,
    statement_amount_minor  bigint,
    divergent_amount_minor  bigint NOT NULL,
    currency                text,
    gateway_count           bigint,
    statement_count         bigint,
    gateway_first_id        bigint,
    FOREIGN KEY (psp, cycle_start) REFERENCES recon.cycle_results (psp, cycle_start) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS cycle_divergences_by_cycle ON recon.cycle_divergences (psp, cycle_start);
CREATE INDEX IF NOT EXISTS cycle_divergences_by_key
    ON recon.cycle_divergences (psp, provider_reference, transaction_type);
CREATE TABLE IF NOT EXISTS recon.cycle_kind_totals (
    psp                     text NOT NULL,
    cycle_start             timestamptz NOT NULL,
    kind                    text NOT NULL,
    divergent_count         bigint NOT NULL,
    divergent_amount_minor  bigint NOT NULL,
    PRIMARY KEY (psp, cycle_start, kind),
    FOREIGN KEY (psp, cycle_start) REFERENCES recon.cycle_results (psp, cycle_start) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS recon.cycle_straddlers (
    psp                 text NOT NULL,
    cycle_start         timestamptz NOT NULL,
    provider_reference  text NOT NULL,
    transaction_type    text NOT NULL,
    PRIMARY KEY (psp, cycle_start, provider_reference, transaction_type),
    FOREIGN KEY (psp, cycle_start) REFERENCES recon.cycle_results (psp, cycle_start) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS recon.cycle_store_state (
    id                   integer PRIMARY KEY CHECK (id = 1),
    mapping_fingerprint  text NOT NULL,
    triggers_installed   boolean NOT NULL,
    installed_at         timestamptz NOT NULL DEFAULT now()
);
""",
    ),
    Migration(
        6,
        "money in its own currency: FX rates; stored cycles keep per-currency figures",
        """
-- units of the reporting currency (BRL by default) per one unit of `currency`, in force from
-- valid_from (DESIGN 3a); the rate of a window is the row with the greatest valid_from <= its end
CREATE TABLE IF NOT EXISTS recon.fx_rates (
    currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    rate        numeric NOT NULL CHECK (rate > 0),
    valid_from  timestamptz NOT NULL,
    source      text NOT NULL DEFAULT '',
    loaded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (currency, valid_from)
);
-- stored cycles were computed with amounts summed across currencies: forget them (the
-- readers classify live until match_transactions stores each cycle again)
DELETE FROM recon.cycle_results;
ALTER TABLE recon.cycle_results
    ADD COLUMN IF NOT EXISTS gateway_by_currency jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE recon.cycle_divergences
    ADD COLUMN IF NOT EXISTS statement_currency text,
    ADD COLUMN IF NOT EXISTS other_amounts jsonb;
ALTER TABLE recon.cycle_kind_totals ADD COLUMN IF NOT EXISTS currency text NOT NULL DEFAULT '';
ALTER TABLE recon.cycle_kind_totals DROP CONSTRAINT IF EXISTS cycle_kind_totals_pkey;
ALTER TABLE recon.cycle_kind_totals ADD PRIMARY KEY (psp, cycle_start, kind, currency);
-- a corrected transaction's amount is in its own currency (from its dry-run proposal)
ALTER TABLE recon.corrections ADD COLUMN IF NOT EXISTS currency text NOT NULL DEFAULT '';
UPDATE recon.corrections AS c SET currency = upper(p.currency)
  FROM recon.correction_proposals AS p
 WHERE c.currency = '' AND p.correction_key = c.correction_key AND p.transaction_id = c.transaction_id;
-- the incident's and each timeline event's figures per currency, with the rates they were
-- converted with (DESIGN 3a): {"currency", "by_currency", "fx_rates", "unconverted_currencies"}
ALTER TABLE recon.incidents ADD COLUMN IF NOT EXISTS currency_figures jsonb;
ALTER TABLE recon.incident_events ADD COLUMN IF NOT EXISTS currency_figures jsonb;
""",
    ),
    Migration(
        7,
        "artifacts in object storage (snapshot, dry run, PSP ticket, closing report, release record)",
        """
-- one row per artifact written to the object store ([recon] artifacts_base_url): the
-- dashboard lists a run's or an incident's artifacts here and serves each from its url
CREATE TABLE IF NOT EXISTS recon.artifacts (
    id            bigserial PRIMARY KEY,
    dag_id        text NOT NULL,
    run_id        text NOT NULL,
    task_id       text NOT NULL,
    psp           text,
    incident_id   text,
    kind          text NOT NULL CHECK (kind IN ('snapshot', 'dry_run', 'psp_ticket', 'closing_report',
                                                'closing_report_html', 'release_record')),
    name          text NOT NULL,
    -- the object's URL (file://, s3://...) and the Airflow connection to read it with
    url           text NOT NULL,
    conn_id       text,
    content_type  text NOT NULL,
    size_bytes    bigint NOT NULL CHECK (size_bytes >= 0),
    sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- written once: a name of a run is never replaced (a retry with the same bytes reuses it)
    CONSTRAINT artifacts_once UNIQUE (dag_id, run_id, name)
);
CREATE INDEX IF NOT EXISTS artifacts_by_incident ON recon.artifacts (incident_id, id);
CREATE INDEX IF NOT EXISTS artifacts_by_run ON recon.artifacts (dag_id, run_id);
""",
    ),
    Migration(
        8,
        "one real remediation per PSP at a time: the PSP's remediation lease and its history",
        """
-- the run that holds a PSP's remediation lease (reconciliation/remediation_lease.py): taken by
-- the scope step of a real (not dry) run, given back by the run's last task, taken over when
-- the holding run is no longer running in Airflow
CREATE TABLE IF NOT EXISTS recon.remediation_leases (
    psp          text PRIMARY KEY,
    dag_id       text NOT NULL,
    run_id       text NOT NULL,
    incident_id  text,
    actor        text NOT NULL,
    acquired_at  timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- a run is about one PSP
    CONSTRAINT remediation_leases_one_per_run UNIQUE (dag_id, run_id)
);
-- every request for a lease and every release: who got it, who was refused because of whom,
-- whose lease was taken over and in which state that run was
CREATE TABLE IF NOT EXISTS recon.remediation_lease_events (
    id                  bigserial PRIMARY KEY,
    psp                 text NOT NULL,
    event               text NOT NULL
                        CHECK (event IN ('acquired', 'reentered', 'taken_over', 'refused', 'released')),
    dag_id              text NOT NULL,
    run_id              text NOT NULL,
    incident_id         text,
    actor               text NOT NULL,
    holder_dag_id       text,
    holder_run_id       text,
    holder_incident_id  text,
    holder_state        text,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS remediation_lease_events_by_psp ON recon.remediation_lease_events (psp, id);
""",
    ),
    Migration(
        9,
        "who requested each correction set; correction notes waiting for their cycle's log row",
        """
-- who asked for a correction set, stored with its dry run (one row per requesting run): the
-- apply checks its requester against these and refuses any of them as the approver
CREATE TABLE IF NOT EXISTS recon.correction_requests (
    correction_key  text NOT NULL,
    run_id          text NOT NULL,
    requested_by    text NOT NULL,
    psp             text NOT NULL,
    incident_id     text,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT correction_requests_pkey PRIMARY KEY (correction_key, run_id)
);
-- a correction in a cycle without a payment_reconciliation_logs row keeps its notes line
-- here until the cycle is recorded (a correction never writes a cycle row of its own)
ALTER TABLE recon.corrections
    ADD COLUMN IF NOT EXISTS note_cycle_start timestamptz,
    ADD COLUMN IF NOT EXISTS note_pending text;
CREATE INDEX IF NOT EXISTS corrections_notes_pending
    ON recon.corrections (psp, note_cycle_start) WHERE note_pending IS NOT NULL;
""",
    ),
)


def applied_versions(conn: psycopg.Connection) -> list[int]:
    exists = conn.execute("SELECT to_regclass('recon.schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    return [r[0] for r in conn.execute("SELECT version FROM recon.schema_migrations ORDER BY version")]


def migrate(conn: psycopg.Connection) -> list[int]:
    """Apply the missing migrations; return the versions applied now (empty if none).

    Migration 5 creates the cycle store's tables only; its triggers on the gateway's tables
    are opt-in (:func:`enable_cycle_store`, ``airflow-recon migrate --cycle-store``).
    """
    applied_now: list[int] = []
    for migration in MIGRATIONS:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute("CREATE SCHEMA IF NOT EXISTS recon")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS recon.schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = conn.execute(
                "SELECT 1 FROM recon.schema_migrations WHERE version = %s", (migration.version,)
            ).fetchone()
            if done:
                continue
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO recon.schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied_now.append(migration.version)
    return applied_now


def create_runbook_tables(conn: psycopg.Connection, *, gateway: bool = True, ledger: bool = True) -> None:
    """Create the runbook's own tables (gateway side, and ``ledger.transactions``).

    For tests, the demo and the seed; a real site already has these tables.
    """
    files = (["gateway_tables.sql"] if gateway else []) + (["ledger_tables.sql"] if ledger else [])
    with conn.transaction():
        for name in files:
            conn.execute(resources.files(__package__).joinpath(name).read_text())
