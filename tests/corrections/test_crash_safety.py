"""A process applying corrections dies in the middle; a retry applies each correction once.

No mocks and no test hooks in the product code: a separate Python process runs the real
``CorrectionsHook.apply``. The test holds a PostgreSQL lock that the apply needs at a
chosen point, waits until the applier's backend is blocked exactly there (seen in
``pg_stat_activity`` / ``pg_locks``), then kills the applier with SIGKILL — or terminates
its database connection — and releases the lock. The uncommitted transaction must leave
nothing behind, and the retry must apply every correction exactly once, with audit rows
and notes lines one to one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest
from correction_data import EXPECTED, audit_rows, checksum, correction_lines, payment_rows

from airflow_recon_provider.reconciliation.corrections import correction_scope
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS

pytestmark = pytest.mark.integration

APPLIER = textwrap.dedent(
    """
    import json, sys
    from airflow_recon_provider.hooks.corrections import CorrectionsHook

    key = sys.argv[1]
    hook = CorrectionsHook()
    result = hook.apply(
        hook.load_proposals(key, psp="stripe"), psp="stripe", correction_key=key,
        requested_by="oncall.ana", approved_by="finance.bia", run_id="crash-run",
    )
    print(json.dumps(result.as_dict()), flush=True)
    """
)

# where the applier is made to stop: the lock the test holds, and the statement the
# applier's backend is then blocked in
POINTS = {
    # before anything is written: waiting for the PSP's advisory lock
    "before_writes": (
        "SELECT pg_advisory_xact_lock(hashtextextended('recon.corrections:stripe', 0))",
        "pg_advisory_xact_lock",
        set(),
    ),
    # payment_transactions already UPDATEd, waiting to insert the audit rows
    "after_update": (
        "LOCK TABLE recon.corrections IN SHARE MODE",
        'INSERT INTO "recon"."corrections"',
        {"payment_transactions"},
    ),
    # rows updated and audited, waiting for the log row whose notes get the lines
    "during_notes": (
        "SELECT id FROM payment_reconciliation_logs WHERE psp = 'stripe' AND status = 'success' FOR UPDATE",
        'FROM "payment_reconciliation_logs"',
        {"payment_transactions", "corrections"},
    ),
}


def _blocked_backend(monitor: psycopg.Connection, statement: str, deadline: float) -> int:
    while time.monotonic() < deadline:
        row = monitor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND wait_event_type = 'Lock' AND position(%s in query) > 0",
            (statement,),
        ).fetchone()
        if row:
            return row[0]
        time.sleep(0.05)
    raise AssertionError(f"the applier never blocked in {statement!r}")


def _written_tables(monitor: psycopg.Connection, pid: int) -> set[str]:
    """Tables the blocked transaction has written (it holds ROW EXCLUSIVE on them)."""
    rows = monitor.execute(
        "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " WHERE l.pid = %s AND l.granted AND l.mode = 'RowExclusiveLock' AND c.relkind = 'r'",
        (pid,),
    ).fetchall()
    return {r[0] for r in rows} & {"payment_transactions", "corrections", "payment_reconciliation_logs"}


def _wait_gone(monitor: psycopg.Connection, pid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if not monitor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            return
        time.sleep(0.05)
    raise AssertionError(f"backend {pid} of the killed applier is still there")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("point", "fault"),
    [
        ("before_writes", "sigkill"),
        ("after_update", "sigkill"),
        ("during_notes", "sigkill"),
        ("after_update", "connection_terminated"),
    ],
)
def test_crash_mid_apply_then_retry_applies_each_correction_once(
    hook, seeded, window, artifacts, db_url, point, fault
):
    dry = hook.dry_run(
        "stripe",
        window,
        ALL_KINDS,
        scope=correction_scope(incident_id="INCIDENT-9", dag_id="d", run_id="r"),
        run_id="r",
        requested_by="oncall.ana",
        artifact_dir=artifacts,
    )
    before = checksum(seeded)
    lock_sql, blocked_in, written = POINTS[point]
    deadline = time.monotonic() + 60

    with psycopg.connect(db_url, autocommit=True) as monitor, psycopg.connect(db_url) as blocker:
        blocker.execute(lock_sql)
        proc = subprocess.Popen(
            [sys.executable, "-c", APPLIER, dry.correction_key],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=os.environ.copy(),
        )
        try:
            pid = _blocked_backend(monitor, blocked_in, deadline)
            assert _written_tables(monitor, pid) == written
            if fault == "sigkill":
                os.kill(proc.pid, signal.SIGKILL)
                assert proc.wait(30) == -signal.SIGKILL
            else:
                monitor.execute("SELECT pg_terminate_backend(%s)", (pid,))
            blocker.rollback()  # release the lock: a dead client's transaction never commits
            _wait_gone(monitor, pid, deadline)
            if fault != "sigkill":
                _, err = proc.communicate(timeout=60)
                assert proc.returncode != 0
                assert b"DatabaseUnavailableError" in err or b"terminat" in err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    # nothing of the killed attempt is left: no half-applied row, audit or note
    assert checksum(seeded) == before
    assert audit_rows(seeded) == [] and correction_lines(seeded) == []

    def retry():
        proposals = hook.load_proposals(dry.correction_key, psp="stripe")
        return hook.apply(
            proposals,
            psp="stripe",
            correction_key=dry.correction_key,
            requested_by="oncall.ana",
            approved_by="finance.bia",
            run_id="crash-run",
        )

    first = retry()
    assert sorted(first.applied) == sorted(EXPECTED)
    second = retry()
    assert second.applied == () and sorted(second.already_applied) == sorted(EXPECTED)
    rows = {r[0]: r[1] for r in payment_rows(seeded)}
    assert {tid: rows[tid] for tid in EXPECTED} == {tid: after for tid, (_, after) in EXPECTED.items()}
    assert [a[1] for a in audit_rows(seeded)] == sorted(EXPECTED)
    assert sorted(int(line.split()[4]) for line in correction_lines(seeded)) == sorted(EXPECTED)
