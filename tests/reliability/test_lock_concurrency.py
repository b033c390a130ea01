"""Concurrency: correction applies and statement loads of the same PSP never interleave;
different PSPs proceed in parallel.

No sleeps decide anything: an apply is stopped in the middle of its transaction by a
PostgreSQL lock the test holds (after it took the PSP's advisory locks and updated its
rows), and the second writer is then *seen* waiting in ``pg_stat_activity`` — or refused
with :class:`CorrectionLockedError` when its ``lock_timeout`` is short.

- two applies of the same PSP: the second waits (then finds the corrections done and
  applies nothing twice) or refuses clearly; an apply of another PSP completes meanwhile;
- two remediation runs of the same PSP with overlapping windows: their scope steps race for
  the PSP's incident — one opens it, the other is refused naming it (and attaches to it when
  its scope is retried); their corrections of the shared rows queue on the PSP's lock, and
  each row is corrected once;
- ``BillingGatewayHook.replace_statement_lines`` (the reconciliation DAG's statement load)
  and an apply of the same PSP: whichever starts second waits for the first (both orders);
  a load of another PSP completes meanwhile.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from correction_data import EXPECTED, RECON_CONFIG, WINDOW_END, WINDOW_START, audit_rows, seed
from reliability_support import FIGURES, granted_advisory_locks, table_checksums, wait_for_backend

pytestmark = pytest.mark.integration

CYCLE_10 = ("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")


@pytest.fixture
def scenario(db, airflow_conns, monkeypatch):
    monkeypatch.setenv("RECON_CONFIG", json.dumps(RECON_CONFIG))
    seed(db)
    return db


def _dry(hook, psp: str, scope: str, tmp_path, window: tuple[str, str] = (WINDOW_START, WINDOW_END)):
    from airflow_recon_provider.reconciliation.kinds import ALL_KINDS
    from airflow_recon_provider.reconciliation.window import Window

    return hook.dry_run(
        psp,
        Window.parse(*window),
        ALL_KINDS,
        scope=scope,
        run_id=scope,
        requested_by="oncall.ana",
        artifact_dir=tmp_path / scope.replace(":", "_"),
    )


def _apply(hook, psp: str, key: str, *, lock_timeout: float = 60.0, run_id: str = "run"):
    return hook.apply(
        hook.load_proposals(key, psp=psp),
        psp=psp,
        correction_key=key,
        requested_by="oncall.ana",
        approved_by="finance.bia",
        run_id=run_id,
        lock_timeout=timedelta(seconds=lock_timeout),
    )


def _statement(psp: str, refs: list[str]):
    from airflow_recon_provider.reconciliation.statements import PspStatement, StatementLine
    from airflow_recon_provider.reconciliation.window import Window

    cycle = Window.parse(*CYCLE_10)
    lines = tuple(
        StatementLine(ref, "capture", "captured", 1000, "BRL", datetime(2026, 11, 20, 10, 5 + n, tzinfo=UTC))
        for n, ref in enumerate(refs)
    )
    return cycle, PspStatement(psp=psp, cycle=cycle, statement_id=f"{psp}-reload", lines=lines)


def _lines(db, psp: str) -> list[tuple]:
    return db.execute(
        "SELECT provider_reference, status, amount_minor, statement_id FROM psp_statement_lines"
        " WHERE psp = %s ORDER BY provider_reference, statement_id",
        (psp,),
    ).fetchall()


@pytest.mark.timeout(120)
def test_two_applies_of_one_psp_never_interleave_and_other_psps_proceed(scenario, db_url, tmp_path):
    from airflow_recon_provider.hooks.corrections import CorrectionsHook
    from airflow_recon_provider.reconciliation.errors import CorrectionLockedError

    db = scenario
    hook = CorrectionsHook()
    first = _dry(hook, "stripe", "incident:INCIDENT-1", tmp_path)
    # another run's dry run of the same rows (another scope: another correction key)
    other = _dry(hook, "stripe", "run:billing_gateway_remediation/manual__2", tmp_path)
    adyen = _dry(hook, "adyen", "incident:INCIDENT-2", tmp_path)
    assert first.correction_key != other.correction_key
    assert first.proposal_count == other.proposal_count == len(EXPECTED)

    # the pool first: on a failure the blocker is closed (its locks released) before the
    # pool waits for its threads
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        psycopg.connect(db_url, autocommit=True) as monitor,
        psycopg.connect(db_url) as blocker,
    ):
        # apply 1 stops after its UPDATE and audit rows, holding the PSP's locks and rows:
        # the test holds stripe's log row, whose notes the apply appends to next
        blocker.execute(
            "SELECT id FROM payment_reconciliation_logs"
            " WHERE psp = 'stripe' AND status = 'success' FOR UPDATE"
        )
        apply_1 = pool.submit(_apply, hook, "stripe", first.correction_key, run_id="run-1")
        pid_1 = wait_for_backend(monitor, 'FROM "payment_reconciliation_logs"')
        assert granted_advisory_locks(monitor, pid_1) == 2
        FIGURES.fault("concurrent_writer_same_psp")

        # a second apply of the same set with a short lock timeout: refused, clearly
        with pytest.raises(CorrectionLockedError) as refused:
            _apply(hook, "stripe", first.correction_key, lock_timeout=0.2, run_id="run-2")
        message = str(refused.value)
        assert "another correction or statement load of PSP stripe held its lock" in message
        assert f"correction set {first.correction_key} was not applied; retry later" in message
        FIGURES.fault("concurrent_writer_same_psp")

        # another run's set over the same rows, patient: it waits on the PSP's advisory lock
        apply_2 = pool.submit(_apply, hook, "stripe", other.correction_key, run_id="run-3")
        pid_2 = wait_for_backend(monitor, "pg_advisory_xact_lock", exclude={pid_1})
        assert granted_advisory_locks(monitor, pid_2) == 0
        assert not apply_1.done() and not apply_2.done()

        # meanwhile another PSP is corrected: it never waits for stripe
        assert _apply(hook, "adyen", adyen.correction_key, lock_timeout=0.2).applied == (201,)

        blocker.rollback()
        result_1, result_2 = apply_1.result(60), apply_2.result(60)

    assert sorted(result_1.applied) == sorted(EXPECTED)
    # the waiting apply saw the rows already corrected: skipped, never applied twice
    assert result_2.applied == () and sorted(result_2.skipped) == sorted(EXPECTED)
    audited = [(a[0], a[1]) for a in audit_rows(db)]
    assert sorted(t for _, t in audited) == sorted([*EXPECTED, 201])
    assert {k for k, t in audited if t in EXPECTED} == {first.correction_key}


@pytest.mark.timeout(120)
def test_statement_load_waits_for_a_correction_of_its_psp(scenario, db_url, tmp_path):
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.hooks.corrections import CorrectionsHook

    db = scenario
    hook = CorrectionsHook()
    gateway = BillingGatewayHook()
    dry = _dry(hook, "stripe", "incident:INCIDENT-1", tmp_path)
    cycle, stripe_statement = _statement("stripe", ["s1", "s2", "s3"])
    _, adyen_statement = _statement("adyen", ["a1"])
    stripe_before = _lines(db, "stripe")

    # the pool first: on a failure the blocker is closed (its locks released) before the
    # pool waits for its threads
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        psycopg.connect(db_url, autocommit=True) as monitor,
        psycopg.connect(db_url) as blocker,
    ):
        blocker.execute("LOCK TABLE recon.corrections IN SHARE MODE")
        apply_1 = pool.submit(_apply, hook, "stripe", dry.correction_key)
        pid_apply = wait_for_backend(monitor, 'INSERT INTO "recon"."corrections"')
        FIGURES.fault("statement_load_during_correction")

        load = pool.submit(gateway.replace_statement_lines, "stripe", cycle, stripe_statement)
        wait_for_backend(monitor, "pg_advisory_xact_lock", exclude={pid_apply})
        # the load has deleted nothing yet: it waits for the correction's transaction
        assert _lines(db, "stripe") == stripe_before
        # a load of another PSP goes through meanwhile
        assert gateway.replace_statement_lines("adyen", cycle, adyen_statement) == 1
        assert not load.done()

        blocker.rollback()
        assert sorted(apply_1.result(60).applied) == sorted(EXPECTED)
        assert load.result(60) == 3
    assert [r[0] for r in _lines(db, "stripe")] == ["s1", "s2", "s3", "s8"]


@pytest.mark.timeout(120)
def test_correction_waits_for_or_refuses_a_statement_load_of_its_psp(scenario, db_url, tmp_path):
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.hooks.corrections import CorrectionsHook
    from airflow_recon_provider.reconciliation.errors import CorrectionLockedError

    db = scenario
    hook = CorrectionsHook()
    gateway = BillingGatewayHook()
    dry = _dry(hook, "stripe", "incident:INCIDENT-1", tmp_path)
    adyen = _dry(hook, "adyen", "incident:INCIDENT-2", tmp_path)
    cycle, statement = _statement("stripe", ["s1", "s2"])

    # the pool first: on a failure the blocker is closed (its locks released) before the
    # pool waits for its threads
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        psycopg.connect(db_url, autocommit=True) as monitor,
        psycopg.connect(db_url) as blocker,
    ):
        # the load takes the PSP's statement lock, then stops before its DELETE
        blocker.execute("LOCK TABLE psp_statement_lines IN SHARE MODE")
        load = pool.submit(gateway.replace_statement_lines, "stripe", cycle, statement)
        pid_load = wait_for_backend(monitor, 'DELETE FROM "psp_statement_lines"')
        assert granted_advisory_locks(monitor, pid_load) == 1
        FIGURES.fault("correction_during_statement_load")

        before = table_checksums(db)
        with pytest.raises(CorrectionLockedError, match="another correction or statement load of PSP stripe"):
            _apply(hook, "stripe", dry.correction_key, lock_timeout=0.2)
        assert table_checksums(db) == before  # refused: nothing applied

        waiting = pool.submit(_apply, hook, "stripe", dry.correction_key)
        wait_for_backend(monitor, "pg_advisory_xact_lock", exclude={pid_load})
        # another PSP's correction is not held up by stripe's load
        assert _apply(hook, "adyen", adyen.correction_key, lock_timeout=0.2).applied == (201,)
        assert not waiting.done()

        blocker.rollback()
        assert load.result(60) == 2
        assert sorted(waiting.result(60).applied) == sorted(EXPECTED)
    assert len(audit_rows(db)) == len(EXPECTED) + 1


def _scope(window: tuple[str, str], run_id: str):
    """The remediation DAG's first task (``investigate.scope``) of a run over ``window``."""
    from types import SimpleNamespace

    from airflow_recon_provider.operators.investigation import ValidateScopeOperator

    operator = ValidateScopeOperator(
        task_id="scope",
        psp="stripe",
        window_start=window[0],
        window_end=window[1],
        dry_run=False,
        reason=f"divergence seen by {run_id}",
    )
    context = {
        "ti": SimpleNamespace(dag_id="billing_gateway_remediation", run_id=run_id, task_id="scope"),
        "run_id": run_id,
        "dag_run": SimpleNamespace(triggering_user_name="oncall.ana", run_id=run_id),
        "dag": None,
    }
    return operator.execute(context)


@pytest.mark.timeout(180)
def test_two_remediation_runs_of_one_psp_with_overlapping_windows(scenario, db_url, tmp_path):
    from airflow_recon_provider.hooks.corrections import CorrectionsHook
    from airflow_recon_provider.reconciliation.incidents import IncidentAlreadyOpenError

    db = scenario
    run_a, run_b = (
        ("2026-11-20T10:00:00Z", "2026-11-20T12:00:00Z"),
        ("2026-11-20T11:00:00Z", "2026-11-20T12:00:00Z"),
    )

    # 1. both scope steps at once: the test holds stripe's incident lock until both wait on it
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        psycopg.connect(db_url, autocommit=True) as monitor,
        psycopg.connect(db_url) as blocker,
    ):
        blocker.execute("SELECT pg_advisory_xact_lock(hashtextextended('recon.incident:stripe', 0))")
        scope_a = pool.submit(_scope, run_a, "manual__a")
        pid_a = wait_for_backend(monitor, "pg_advisory_xact_lock", exclude={blocker.info.backend_pid})
        scope_b = pool.submit(_scope, run_b, "manual__b")
        wait_for_backend(monitor, "pg_advisory_xact_lock", exclude={blocker.info.backend_pid, pid_a})
        FIGURES.fault("concurrent_remediation_runs_same_psp")
        blocker.rollback()
        outcomes = []
        for future in (scope_a, scope_b):
            try:
                outcomes.append(future.result(60))
            except IncidentAlreadyOpenError as refused:
                outcomes.append(refused)
    opened = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(opened) == 1 and len(refused) == 1, outcomes
    incident_id = opened[0]["incident_id"]
    assert opened[0]["incident_action"] == "opened"
    assert str(refused[0]).startswith(
        f"PSP stripe already has an open incident, {incident_id} (open, opened "
    )
    assert "record the new findings on it" in str(refused[0])
    (open_incidents,) = db.execute(
        "SELECT count(*) FROM recon.incidents WHERE psp = 'stripe' AND state <> 'closed'"
    ).fetchone()
    assert open_incidents == 1
    # the refused run's scope, retried, joins the incident
    retried = _scope(run_b if isinstance(outcomes[1], Exception) else run_a, "manual__retry")
    assert (retried["incident_id"], retried["incident_action"]) == (incident_id, "attached")

    # 2. their corrections: A's window holds all four rows, B's only 108 (11:15)
    hook = CorrectionsHook()
    dry_a = _dry(hook, "stripe", "run:billing_gateway_remediation/manual__a", tmp_path, run_a)
    dry_b = _dry(hook, "stripe", "run:billing_gateway_remediation/manual__b", tmp_path, run_b)
    assert dry_a.proposal_count == 4 and dry_b.proposal_count == 1
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        psycopg.connect(db_url, autocommit=True) as monitor,
        psycopg.connect(db_url) as blocker,
    ):
        blocker.execute(
            "SELECT id FROM payment_reconciliation_logs"
            " WHERE psp = 'stripe' AND status = 'success' FOR UPDATE"
        )
        apply_a = pool.submit(_apply, hook, "stripe", dry_a.correction_key, run_id="manual__a")
        pid_a = wait_for_backend(monitor, 'FROM "payment_reconciliation_logs"')
        apply_b = pool.submit(_apply, hook, "stripe", dry_b.correction_key, run_id="manual__b")
        wait_for_backend(monitor, "pg_advisory_xact_lock", exclude={pid_a})
        FIGURES.fault("concurrent_writer_same_psp")
        assert not apply_a.done() and not apply_b.done()
        blocker.rollback()
        result_a, result_b = apply_a.result(60), apply_b.result(60)
    assert sorted(result_a.applied) == sorted(EXPECTED)
    assert result_b.applied == () and result_b.skipped == (108,)
    audited = [(a[0], a[1]) for a in audit_rows(db)]
    assert sorted(t for _, t in audited) == sorted(EXPECTED)  # each row corrected once
    assert {k for k, _ in audited} == {dry_a.correction_key}
