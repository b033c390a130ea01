"""One real ``billing_gateway_remediation`` per PSP at a time, with ``dag.test()`` on the seeded
divergence: while another real run of the PSP is running (its lease taken 50 s earlier, its
incident open) a second real run is refused at scope and does nothing else; a run that is no
longer running (failed) is taken over; the lease is given back when the run ends, also when
it fails; a dry run is never refused. The holding run's state is read by the scope through
the Task SDK (no metadata-database access from tasks), from the run recorded in Airflow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from remediation_dag_support import (
    WINDOW_END,
    WINDOW_START,
    checksum,
    dag_runs_of,
    forget_run,
    hitl_requests,
    lease_holder,
    states,
    xcom,
)

from airflow_recon_provider.devtools.demo_airflow import HitlAnswerer

pytestmark = [pytest.mark.dags, pytest.mark.integration, pytest.mark.timeout(300)]

REQUESTER = "dag_test"  # what dag.test() records as the triggering user (AIRFLOW3-NOTES)
CONF = {"psp": "stripe", "window_start": WINDOW_START, "window_end": WINDOW_END}
DAG_ID = "billing_gateway_remediation"


@pytest.fixture
def holder(scenario, db):
    """Another real remediation of stripe: its incident opened, its lease taken 50 s ago;
    ``holder(state)`` records that run in Airflow in ``state`` and returns
    ``(run_id, incident_id, acquired_at)``."""
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation.window import Window

    created: list[str] = []

    def make(state: str | None) -> tuple[str, str, datetime]:
        run_id = f"manual__lease_holder_{len(created)}_{state}_{datetime.now(UTC):%H%M%S%f}"
        incident_id = IncidentHook().open_incident(
            "stripe",
            window=Window.parse(WINDOW_START, WINDOW_END),
            reason="divergence alert",
            actor="oncall",
            run_id=run_id,
        )
        acquired_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=50)
        lease_holder(state, run_id=run_id, incident_id=incident_id, acquired_at=acquired_at)
        created.append(run_id)
        return run_id, incident_id, acquired_at

    yield make
    for run_id in created:
        forget_run(DAG_ID, run_id)


def lease_events(db) -> list[tuple]:
    return db.execute(
        "SELECT event, run_id, incident_id, holder_run_id, holder_incident_id, holder_state"
        " FROM recon.remediation_lease_events ORDER BY id"
    ).fetchall()


def test_a_second_real_run_is_refused_while_the_first_runs(
    remediation_dag, register_dag, holder, psp_api, finance_conns, core_api, workdir, db, capfd
):
    holder_run, incident_id, acquired_at = holder("running")
    before = checksum(db)
    reprocess_runs = dag_runs_of("billing_gateway_reconciliation")

    dag_run = remediation_dag.test(run_conf={**CONF, "dry_run": False, "reason": "second on-call engineer"})

    task_states = states(dag_run)
    assert dag_run.state == "failed", task_states
    assert task_states.pop("investigate.scope") == "failed"
    assert task_states.pop("release_lease") == "success"  # held nothing, gave nothing back
    assert set(task_states.values()) == {"upstream_failed"}, task_states
    # the refusal names the running run and its incident (dag.test logs the task's error)
    captured = capfd.readouterr()
    log = captured.out + captured.err
    assert "RemediationInProgressError" in log
    assert f"PSP stripe already has a real remediation running: {DAG_ID} run {holder_run}" in log
    assert f"(incident {incident_id}, started by oncall" in log
    assert f"{DAG_ID} run {dag_run.run_id} was refused and changes nothing" in log

    # nothing done twice: no attach to the open incident, no pause, reprocess, approval
    # request, tag, report or message
    assert checksum(db) == before
    assert dag_runs_of("billing_gateway_reconciliation") == reprocess_runs
    assert hitl_requests(DAG_ID, dag_run.run_id) == 0
    assert not workdir["release"].exists()
    assert psp_api.requests == [] and core_api.requests == []
    assert finance_conns["slack"].posts == [] and finance_conns["smtp"].messages == []
    # the lease stays with the running run; the refusal is on the lease's history
    assert db.execute("SELECT run_id, acquired_at FROM recon.remediation_leases").fetchall() == [
        (holder_run, acquired_at)
    ]
    assert lease_events(db) == [
        ("acquired", holder_run, incident_id, None, None, None),
        ("refused", dag_run.run_id, None, holder_run, incident_id, "running"),
    ]


def test_a_dry_run_is_never_refused(
    remediation_dag, register_dag, holder, psp_api, finance_conns, core_api, workdir, db
):
    holder_run, incident_id, _ = holder("running")
    dag_run = remediation_dag.test(run_conf=CONF)  # dry_run defaults to true
    assert dag_run.state == "success", states(dag_run)
    scope = xcom(dag_run, "investigate.scope")
    assert scope["dry_run"] is True and scope["lease"] is None
    assert scope["incident_id"] == incident_id  # it reads the open incident, as before
    assert xcom(dag_run, "mitigate.correct_transactions")["outcome"] == "dry_run"
    assert xcom(dag_run, "release_lease")["released"] is False
    assert db.execute("SELECT run_id FROM recon.remediation_leases").fetchall() == [(holder_run,)]
    assert [e[0] for e in lease_events(db)] == ["acquired"]


def test_a_failed_run_is_taken_over_and_a_failing_run_gives_the_lease_back(
    remediation_dag,
    register_dag,
    holder,
    psp_api,
    finance_conns,
    core_api,
    workdir,
    children_run_by_the_test,
    db,
):
    """The holder failed without giving the lease back (its teardown never ran): the next real
    run takes it over; that run fails at the correction (finance's approval refused: the
    requester approved it) and its last task still gives the PSP back."""
    holder_run, incident_id, _ = holder("failed")
    answerer = HitlAnswerer(remediation_dag.dag_id, chosen="Approve", user=REQUESTER)
    answerer.start()
    dag_run = remediation_dag.test(run_conf={**CONF, "dry_run": False})
    answerer.finish()

    task_states = states(dag_run)
    assert dag_run.state == "failed", task_states
    assert task_states["mitigate.correct_transactions"] == "failed", task_states
    assert task_states["release_lease"] == "success", task_states
    scope = xcom(dag_run, "investigate.scope")
    assert (scope["incident_action"], scope["incident_id"]) == ("attached", incident_id)
    lease = scope["lease"]
    assert (lease["outcome"], lease["incident_id"]) == ("taken_over", incident_id)
    assert (lease["taken_over_from"]["run_id"], lease["taken_over_from"]["state"]) == (holder_run, "failed")
    assert hitl_requests(DAG_ID, dag_run.run_id) == 1
    # given back at the end, although the run failed
    assert xcom(dag_run, "release_lease") | {"acquired_at": None} == {
        "released": True,
        "psp": "stripe",
        "incident_id": incident_id,
        "acquired_at": None,
    }
    assert db.execute("SELECT count(*) FROM recon.remediation_leases").fetchone() == (0,)
    assert lease_events(db) == [
        ("acquired", holder_run, incident_id, None, None, None),
        ("taken_over", dag_run.run_id, incident_id, holder_run, incident_id, "failed"),
        ("released", dag_run.run_id, incident_id, None, None, None),
    ]
    assert not workdir["release"].exists()  # nothing rolled back or tagged after the failure
