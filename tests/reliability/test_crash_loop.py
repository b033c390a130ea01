"""Crash safety of the data correction: the process applying corrections is SIGKILLed at a
seeded random point before, during or after its transaction, then the apply is retried.

Every run starts from the hand-made divergences of ``tests/corrections/correction_data``
(four stripe corrections, an adyen row that must never move, an open incident), makes the
dry run, and starts a separate Python process running the real ``CorrectionsHook.apply``.
The harness of ``tests/corrections/test_crash_safety.py`` stops that process at a chosen
point — the test holds a PostgreSQL lock the apply needs there and waits until the
applier's backend is blocked on it (``pg_stat_activity``) — and kills it with SIGKILL.
Other points: a random delay after the start (anywhere from the imports to the commit),
and after the commit (the process printed its result and is killed before it could tell
anyone). Then:

- right after the kill the database holds either nothing of the attempt or all of it
  (a committed attempt), never a part;
- the retry (and a second retry) applies every approved correction exactly once: the four
  rows have their new status, one ``recon.corrections`` row each matching the row as it is
  now, one notes line each in ``payment_reconciliation_logs``, one ``applied`` event on the
  incident, and nothing else in the database changed.

``RECON_RELIABILITY_CRASH_RUNS`` sets the number of runs (default 9, one per point; 50 or
more on demand), ``RECON_RELIABILITY_SEED`` the base seed. Run i uses ``Random(seed + i)``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest
from correction_data import (
    EXPECTED,
    RECON_CONFIG,
    WINDOW_END,
    WINDOW_START,
    audit_rows,
    correction_lines,
    payment_rows,
    seed,
)
from reliability_support import (
    FIGURES,
    crash_runs,
    crash_seed,
    granted_advisory_locks,
    table_checksums,
    wait_for_backend,
)
from test_crash_safety import _wait_gone  # the harness of tests/corrections

pytestmark = pytest.mark.integration

INCIDENT = "INCIDENT-472"
APPLIER = textwrap.dedent(
    """
    import json, sys
    from airflow_recon_provider.hooks.corrections import CorrectionsHook

    key, incident = sys.argv[1], sys.argv[2]
    hook = CorrectionsHook()
    result = hook.apply(
        hook.load_proposals(key, psp="stripe"), psp="stripe", correction_key=key,
        requested_by="oncall.ana", approved_by="finance.bia", run_id="crash-run",
        incident_id=incident,
    )
    print(json.dumps(result.as_dict()), flush=True)
    sys.stdin.read()  # stay alive after the commit: the test kills this process
    """
)

_WRITTEN = {"payment_transactions", "corrections", "payment_reconciliation_logs", "incident_events"}

#: point -> (phase, SQL the test holds, fragment of the statement the applier blocks in,
#: advisory locks the applier holds there, tables it has written there)
LOCK_POINTS = {
    "advisory_lock_corrections": (
        "before",
        "SELECT pg_advisory_xact_lock(hashtextextended('recon.corrections:stripe', 0))",
        "pg_advisory_xact_lock",
        0,
        set(),
    ),
    "advisory_lock_statements": (
        "before",
        "SELECT pg_advisory_xact_lock(hashtextextended('recon.statements:stripe', 0))",
        "pg_advisory_xact_lock",
        1,
        set(),
    ),
    "row_lock_targets": (
        "before",
        "SELECT id FROM payment_transactions WHERE id = 103 FOR UPDATE",
        "FOR UPDATE OF t",
        2,
        set(),
    ),
    "audit_insert": (
        "during",
        "LOCK TABLE recon.corrections IN SHARE MODE",
        'INSERT INTO "recon"."corrections"',
        2,
        {"payment_transactions"},
    ),
    "notes_row_lock": (
        "during",
        "SELECT id FROM payment_reconciliation_logs WHERE psp = 'stripe' AND status = 'success' FOR UPDATE",
        'FROM "payment_reconciliation_logs"',
        2,
        {"payment_transactions", "corrections"},
    ),
    "notes_append": (
        "during",
        "LOCK TABLE payment_reconciliation_logs IN SHARE MODE",
        'UPDATE "payment_reconciliation_logs"',
        2,
        {"payment_transactions", "corrections"},
    ),
    "incident_event": (
        "during",
        "LOCK TABLE recon.incident_events IN SHARE MODE",
        "INSERT INTO recon.incident_events",
        2,
        {"payment_transactions", "corrections", "payment_reconciliation_logs"},
    ),
}
OTHER_POINTS = {"random_delay": "any", "after_commit": "after"}
POINTS = sorted(LOCK_POINTS) + sorted(OTHER_POINTS)


def _schedule(runs: int, base_seed: int) -> list[tuple[int, str]]:
    """(seed, point) of each run: every block of len(POINTS) runs is a seeded shuffle of all
    points, so 9 runs cover each point once and 50 runs cover each five or six times."""
    order: list[str] = []
    block = 0
    while len(order) < runs:
        points = list(POINTS)
        random.Random(base_seed - 1 - block).shuffle(points)
        order += points
        block += 1
    return [(base_seed + i, order[i]) for i in range(runs)]


SCHEDULE = _schedule(crash_runs(), crash_seed())


def _written_tables(monitor: psycopg.Connection, pid: int) -> set[str]:
    rows = monitor.execute(
        "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " WHERE l.pid = %s AND l.granted AND l.mode = 'RowExclusiveLock' AND c.relkind = 'r'",
        (pid,),
    ).fetchall()
    return {r[0] for r in rows} & _WRITTEN


def _wait_others_gone(monitor: psycopg.Connection, ours: set[int], deadline: float) -> None:
    """Wait until no client backend but the test's own is left in the database (the killed
    applier's backend ends once it notices its client is gone)."""
    while time.monotonic() < deadline:
        (others,) = monitor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND NOT (pid = ANY(%s))",
            (list(ours),),
        ).fetchone()
        if not others:
            return
        time.sleep(0.05)
    raise AssertionError("the killed applier's backend is still there")


def _state(db: psycopg.Connection, before: dict[str, str]) -> str:
    """``untouched`` (checksums equal), ``complete`` (all four corrections with their audit
    and notes), or ``partial: ...`` (a failure of the apply's atomicity)."""
    if table_checksums(db) == before:
        return "untouched"
    statuses = {r[0]: r[1] for r in payment_rows(db)}
    done = {tid for tid, (_, after) in EXPECTED.items() if statuses[tid] == after}
    audited = [a[1] for a in audit_rows(db)]
    notes = correction_lines(db)
    (events,) = db.execute(
        "SELECT count(*) FROM recon.incident_events WHERE details->>'decision' = 'applied'"
    ).fetchone()
    if done == set(EXPECTED) and sorted(audited) == sorted(EXPECTED) and len(notes) == 4 and events == 1:
        return "complete"
    return f"partial: rows {sorted(done)}, audit {audited}, notes {len(notes)}, events {events}"


@pytest.fixture
def scenario(db, airflow_conns, monkeypatch):
    monkeypatch.setenv("RECON_CONFIG", json.dumps(RECON_CONFIG))
    seed(db)
    db.execute(
        "INSERT INTO recon.incidents (incident_id, psp, opened_by) VALUES (%s, 'stripe', 'watch')",
        (INCIDENT,),
    )
    return db


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("run_seed", "point"), SCHEDULE, ids=[f"{s}-{p}" for s, p in SCHEDULE])
def test_sigkill_then_retry_applies_each_correction_exactly_once(scenario, db_url, tmp_path, run_seed, point):
    from airflow_recon_provider.hooks.corrections import CorrectionsHook
    from airflow_recon_provider.reconciliation.corrections import correction_scope
    from airflow_recon_provider.reconciliation.kinds import ALL_KINDS
    from airflow_recon_provider.reconciliation.window import Window

    db = scenario
    rng = random.Random(run_seed)
    hook = CorrectionsHook()
    dry = hook.dry_run(
        "stripe",
        Window.parse(WINDOW_START, WINDOW_END),
        ALL_KINDS,
        scope=correction_scope(incident_id=INCIDENT, dag_id="d", run_id="r"),
        run_id="r",
        requested_by="oncall.ana",
        incident_id=INCIDENT,
        artifact_dir=tmp_path,
    )
    assert dry.proposal_count == len(EXPECTED)
    before_rows = {r[0]: r for r in payment_rows(db)}
    before = table_checksums(db)
    deadline = time.monotonic() + 90

    with psycopg.connect(db_url, autocommit=True) as monitor, psycopg.connect(db_url) as blocker:
        if point in LOCK_POINTS:
            _, lock_sql, blocked_in, advisory, written = LOCK_POINTS[point]
            blocker.execute(lock_sql)
        proc = subprocess.Popen(
            [sys.executable, "-c", APPLIER, dry.correction_key, INCIDENT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=os.environ.copy(),
        )
        ours = {monitor.info.backend_pid, blocker.info.backend_pid, db.info.backend_pid}
        try:
            if point in LOCK_POINTS:
                pid = wait_for_backend(monitor, blocked_in)
                assert granted_advisory_locks(monitor, pid) == advisory
                assert _written_tables(monitor, pid) == written
            elif point == "after_commit":
                # the result line (after the hook's log lines): the transaction committed
                line = b""
                while not line.startswith(b"{"):
                    line = proc.stdout.readline()
                    assert line, "the applier ended without printing its result"
                assert json.loads(line)["applied"] == len(EXPECTED), line
            else:  # anywhere: during the imports, the connection, the transaction or after
                time.sleep(rng.uniform(0.0, 2.5))
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
            FIGURES.fault("sigkill_of_correction_apply")
            blocker.rollback()  # release the lock: a dead client's transaction never commits
            if point in LOCK_POINTS:
                _wait_gone(monitor, pid, deadline)
            _wait_others_gone(monitor, ours, deadline)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                stream.close()

    # nothing of the killed attempt, or all of it: never a part
    state = _state(db, before)
    expected_state = {"before": "untouched", "during": "untouched", "after": "complete"}.get(
        LOCK_POINTS[point][0] if point in LOCK_POINTS else OTHER_POINTS[point]
    )
    assert not state.startswith("partial"), state
    if expected_state is not None:
        assert state == expected_state
    FIGURES.crash_points[point] += 1
    FIGURES.crash_states[state] += 1

    def retry():
        return hook.apply(
            hook.load_proposals(dry.correction_key, psp="stripe"),
            psp="stripe",
            correction_key=dry.correction_key,
            requested_by="oncall.ana",
            approved_by="finance.bia",
            run_id="crash-run-retry",
            incident_id=INCIDENT,
        )

    first, second = retry(), retry()
    if state == "untouched":
        assert sorted(first.applied) == sorted(EXPECTED)
    else:
        assert first.applied == () and sorted(first.already_applied) == sorted(EXPECTED)
    assert second.applied == () and sorted(second.already_applied) == sorted(EXPECTED)

    # exactly once: measured, then asserted
    rows = {r[0]: r for r in payment_rows(db)}
    corrected = {tid for tid, (_, after) in EXPECTED.items() if rows[tid][1] == after}
    audited = [a[1] for a in audit_rows(db)]
    noted = [int(line.split()[4]) for line in correction_lines(db)]
    lost = len(set(EXPECTED) - (corrected & set(audited) & set(noted)))
    duplicated = (len(audited) - len(set(audited))) + (len(noted) - len(set(noted)))
    FIGURES.crashes_survived += 1
    FIGURES.corrections_expected += len(EXPECTED)
    FIGURES.corrections_lost += lost
    FIGURES.corrections_duplicated += duplicated
    assert (lost, duplicated) == (0, 0)
    assert sorted(audited) == sorted(EXPECTED) == sorted(noted)

    # audit rows match the corrected rows one to one, as they are now
    (matching,) = db.execute(
        """SELECT count(*) FROM recon.corrections c JOIN payment_transactions t ON t.id = c.transaction_id
           WHERE t.status = c.after->>'status' AND t.processed_at = (c.after->>'processed_at')::timestamptz
             AND c.before->>'status' = %s::jsonb->>(c.transaction_id::text)""",
        (json.dumps({str(tid): b for tid, (b, _) in EXPECTED.items()}),),
    ).fetchone()
    assert matching == len(EXPECTED)
    # nothing else moved: the other rows, amounts, the adyen row
    for tid, row in before_rows.items():
        if tid in EXPECTED:
            assert rows[tid][3] == row[3]  # amount never touched
        else:
            assert rows[tid] == row
    (events,) = db.execute(
        "SELECT count(*) FROM recon.incident_events"
        " WHERE incident_id = %s AND details->>'decision' = 'applied'",
        (INCIDENT,),
    ).fetchone()
    assert events == 1
