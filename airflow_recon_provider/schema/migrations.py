"""Versioned, idempotent migrations of the provider's ``recon`` schema.

Each migration runs once, in its own transaction, under an advisory lock so that
two workers migrating at the same time do not race; re-running is a no-op.
The ``recon`` schema holds the provider's state: per-PSP controls (pause/resume),
incidents and their timeline, and the audit of every corrected transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import psycopg

#: arbitrary constant: ``pg_advisory_xact_lock`` key of the recon migrations
_LOCK_KEY = 0x5EC0_0001


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


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
)


def applied_versions(conn: psycopg.Connection) -> list[int]:
    exists = conn.execute("SELECT to_regclass('recon.schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    return [r[0] for r in conn.execute("SELECT version FROM recon.schema_migrations ORDER BY version")]


def migrate(conn: psycopg.Connection) -> list[int]:
    """Apply the missing migrations; return the versions applied now (empty if none)."""
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
