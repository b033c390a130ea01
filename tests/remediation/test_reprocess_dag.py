"""ReprocessReconciliationOperator in a real Airflow run (``dag.test()``): it triggers one
``billing_gateway_reconciliation`` run per cycle through the execution API, defers, and
its trigger follows the runs. ``dag.test()`` runs no scheduler, so the test itself
executes the triggered runs, for real (statements from a local PSP API, real PostgreSQL),
when the trigger first polls; one cycle fails at the PSP and falls back to the local
billing-gateway-core."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from psp_api_server import FakePspApi
from remediation_helpers import CORE_TOKEN
from werkzeug import Request, Response

from airflow_recon_provider.reconciliation.reprocess import (
    core_idempotency_key,
    cycle_run_id,
    remediation_key,
)
from airflow_recon_provider.reconciliation.window import Cycle

pytestmark = [pytest.mark.dags, pytest.mark.integration]

PARENT_DAG_ID = "test_reprocess_parent"
PARENT_LOGICAL_DATE = datetime(2026, 11, 21, 6, tzinfo=UTC)

CYCLE_10 = Cycle(datetime(2026, 11, 20, 10, tzinfo=UTC))
CYCLE_11 = Cycle(datetime(2026, 11, 20, 11, tzinfo=UTC))


@dataclass
class CyclePspApi(FakePspApi):
    """The PSP API, refusing (HTTP 400, not retried) the statement of some cycles."""

    refused_from: set[str] = field(default_factory=set)

    def __call__(self, request: Request) -> Response:
        if request.args.get("from") in self.refused_from:
            self.requests.append({**request.args.to_dict(), "refused": True})
            return Response("no statement for this cycle", status=400)
        return super().__call__(request)


@pytest.fixture
def scenario(db, airflow_conns, core_api, core_conn, httpserver, monkeypatch):
    db.execute("INSERT INTO payment_intents (id, provider, provider_reference) VALUES (1,'stripe','r1')")
    db.execute(
        "INSERT INTO payment_transactions (intent_id, transaction_type, status, amount_minor, currency,"
        " created_at) VALUES (1,'capture','captured',1000,'BRL','2026-11-20T10:10Z')"
    )
    psp = CyclePspApi(refused_from={"2026-11-20T11:00:00Z"})
    psp.statements["stripe"] = [
        {
            "statement_id": "stripe-2026112010",
            "lines": [
                {
                    "provider_reference": "r1",
                    "transaction_type": "capture",
                    "status": "captured",
                    "amount_minor": 1000,
                    "currency": "BRL",
                    "occurred_at": "2026-11-20T10:11:00Z",
                }
            ],
        }
    ]
    httpserver.expect_request("/statements").respond_with_handler(psp)
    monkeypatch.setenv("AIRFLOW_CONN_PSP_STRIPE", httpserver.url_for("/"))
    monkeypatch.setenv("RECON_CONFIG", json.dumps({"psps": ["stripe", "adyen"]}))
    return psp


@pytest.fixture
def make_parent(register_dag, dagbag):
    """A DAG with one reprocess task over the cycles 10:00 and 11:00 of stripe."""
    from airflow.sdk import DAG

    from airflow_recon_provider.operators.reprocess import ReprocessReconciliationOperator

    def make(dag_id: str = PARENT_DAG_ID, **operator_kwargs):
        with DAG(
            dag_id=dag_id,
            schedule=None,
            start_date=datetime(2026, 1, 1, tzinfo=UTC),
            catchup=False,
            params={"window_start": "2026-11-20T10:00:00Z", "window_end": "2026-11-20T12:00:00Z"},
        ) as dag:
            ReprocessReconciliationOperator(
                task_id="reprocess",
                window_start="{{ params.window_start }}",
                window_end="{{ params.window_end }}",
                **{"psp": "stripe", "poll_interval": 0.2, "wait_timeout": 120, "core_max_attempts": 2}
                | operator_kwargs,
            )
        return register_dag(dag)

    return make


@pytest.fixture
def parent_dag(make_parent):
    return make_parent()


@pytest.fixture
def children_run_by_the_test(reconciliation_dag):
    """When the reprocess trigger polls, first execute the queued reconciliation runs (what a
    scheduler and a worker would do meanwhile; ``dag.test()`` runs no scheduler), the way the
    headless demo does. Yields the run ids executed."""
    from airflow_recon_provider.devtools.demo_airflow import reprocess_runs_executed_here

    with reprocess_runs_executed_here(reconciliation_dag) as executed:
        yield executed


def child_runs(key: str | None = None):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        runs = session.scalars(
            select(DagRun).where(
                DagRun.dag_id == "billing_gateway_reconciliation",
                DagRun.run_id.like(f"reprocess__%__{key}" if key else "reprocess__%"),
            )
        ).all()
        return {r.run_id: (r.state, r.conf, r.logical_date, str(r.run_type)) for r in runs}


def logs_of(db, psp):
    return db.execute(
        "SELECT cycle_start, status FROM payment_reconciliation_logs WHERE psp = %s ORDER BY cycle_start, id",
        (psp,),
    ).fetchall()


@pytest.mark.timeout(180)
def test_reprocess_triggers_waits_and_falls_back(
    parent_dag, scenario, core_api, db, children_run_by_the_test, capsys
):
    dag_run = parent_dag.test(logical_date=PARENT_LOGICAL_DATE)
    ti = dag_run.get_task_instance("reprocess")
    assert dag_run.state == "success", ti.state

    key = remediation_key(PARENT_DAG_ID, dag_run.run_id, "reprocess", -1)
    run_10, run_11 = cycle_run_id("stripe", CYCLE_10, key), cycle_run_id("stripe", CYCLE_11, key)

    # one run per cycle, with the conf that redoes that cycle, triggered by the operator
    children = child_runs(key)
    assert set(children) == {run_10, run_11}
    assert sorted(children_run_by_the_test) == sorted([run_10, run_11])
    assert children[run_10][:3] == (
        "success",
        {"psp": "stripe", "cycle_start": CYCLE_10.start.isoformat(), "reprocess": True},
        None,
    )
    assert children[run_11][:2] == (
        "failed",
        {"psp": "stripe", "cycle_start": CYCLE_11.start.isoformat(), "reprocess": True},
    )
    assert children[run_10][3] == "operator_triggered"
    # and they really reconciled those cycles
    assert logs_of(db, "stripe") == [(CYCLE_10.start, "success"), (CYCLE_11.start, "failed")]
    assert {r["from"] for r in scenario.requests} == {"2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z"}

    states = ti.xcom_pull(task_ids="reprocess", key="cycle_states")
    assert [(s["cycle_start"], s["run_id"], s["run_state"], s["state"]) for s in states] == [
        (CYCLE_10.start.isoformat(), run_10, "success", "success"),
        (CYCLE_11.start.isoformat(), run_11, "failed", "failed"),
    ]

    report = ti.xcom_pull(task_ids="reprocess")
    assert report["all_succeeded"] is False
    assert report["all_resolved"] is True
    first, second = report["cycles"]
    assert (first["cycle_start"], first["state"], first["fallback"]) == (
        CYCLE_10.start.isoformat(),
        "success",
        None,
    )
    assert (second["cycle_start"], second["state"]) == (CYCLE_11.start.isoformat(), "failed")
    assert second["fallback"]["status"] == "accepted"
    assert second["fallback"]["job_id"] == "job-1"
    assert second["fallback"]["http_status"] == 202

    # the fallback: one POST for the failed cycle only, bearer token, idempotency key
    (request,) = core_api.requests
    assert request["authorization"] == f"Bearer {CORE_TOKEN}"
    assert request["idempotency_key"] == core_idempotency_key("stripe", CYCLE_11, key)
    assert request["json"] == {
        "psp": "stripe",
        "cycle_start": "2026-11-20T11:00:00Z",
        "cycle_end": "2026-11-20T12:00:00Z",
    }
    assert CORE_TOKEN not in json.dumps(report) + json.dumps(states)
    output = capsys.readouterr()
    assert CORE_TOKEN not in output.out + output.err

    # the same remediation run again (a retry): no second run per cycle, the runs' final
    # states are read without deferring, the core sees the same Idempotency-Key
    children_run_by_the_test.clear()
    again_run = parent_dag.test(logical_date=PARENT_LOGICAL_DATE, run_after=dag_run.run_after)
    assert again_run.run_id == dag_run.run_id
    assert again_run.state == "success"
    assert set(child_runs(key)) == {run_10, run_11}
    assert children_run_by_the_test == []
    assert [r["idempotency_key"] for r in core_api.requests] == [
        core_idempotency_key("stripe", CYCLE_11, key)
    ] * 2
    again = again_run.get_task_instance("reprocess").xcom_pull(task_ids="reprocess")
    assert [c["state"] for c in again["cycles"]] == ["success", "failed"]


@pytest.mark.timeout(180)
def test_runs_that_never_finish_time_out_and_fall_back(make_parent, scenario, core_api):
    # nobody executes the triggered runs (as with a paused DAG or a stopped scheduler)
    dag = make_parent("test_reprocess_timeout", wait_timeout=1.0, poll_interval=0.2)
    dag_run = dag.test(logical_date=PARENT_LOGICAL_DATE)
    assert dag_run.state == "success"
    key = remediation_key("test_reprocess_timeout", dag_run.run_id, "reprocess", -1)
    assert {state for state, *_ in child_runs(key).values()} == {"queued"}
    report = dag_run.get_task_instance("reprocess").xcom_pull(task_ids="reprocess")
    assert [(c["run_state"], c["state"], c["fallback"]["status"]) for c in report["cycles"]] == [
        ("queued", "timeout", "accepted"),
        ("queued", "timeout", "accepted"),
    ]
    assert (report["all_succeeded"], report["all_resolved"]) == (False, True)
    assert [r["json"]["cycle_start"] for r in core_api.requests] == [
        "2026-11-20T10:00:00Z",
        "2026-11-20T11:00:00Z",
    ]
    assert scenario.requests == []  # no statement was fetched: nothing ran


@pytest.mark.timeout(180)
def test_paused_psp_is_reprocessed_on_purpose_and_stays_paused(
    make_parent, scenario, core_api, db, children_run_by_the_test
):
    """Containment pauses the *automatic* reconciliation; the reprocess runs carry
    ``reprocess: true`` and reconcile the paused PSP anyway (runbook Mitigação 1), while the
    pause itself stays in place."""
    db.execute(
        "INSERT INTO recon.controls (psp, state, reason, actor) VALUES"
        " ('stripe', 'paused', 'INCIDENT-472', 'oncall@platform.io')"
    )
    dag = make_parent("test_reprocess_paused")
    dag_run = dag.test(logical_date=PARENT_LOGICAL_DATE)
    assert dag_run.state == "success"
    key = remediation_key("test_reprocess_paused", dag_run.run_id, "reprocess", -1)
    assert {conf["reprocess"] for _state, conf, *_ in child_runs(key).values()} == {True}
    report = dag_run.get_task_instance("reprocess").xcom_pull(task_ids="reprocess")
    # the cycles were really reconciled (the same outcome as for an active PSP)
    assert [(c["run_state"], c["state"]) for c in report["cycles"]] == [
        ("success", "success"),
        ("failed", "failed"),
    ]
    assert logs_of(db, "stripe") == [(CYCLE_10.start, "success"), (CYCLE_11.start, "failed")]
    assert len(core_api.requests) == 1 and report["all_resolved"] is True
    assert db.execute("SELECT state FROM recon.controls WHERE psp = 'stripe'").fetchone() == ("paused",)


@pytest.mark.timeout(180)
def test_core_refusal_fails_the_task_with_the_report_in_xcom(
    make_parent, scenario, core_api, children_run_by_the_test
):
    from core_api_server import Scripted

    core_api.script = [Scripted(400, {"error": "cycle already closed"})]
    dag = make_parent("test_reprocess_refused")
    dag_run = dag.test(logical_date=PARENT_LOGICAL_DATE)
    ti = dag_run.get_task_instance("reprocess")
    assert (dag_run.state, ti.state) == ("failed", "failed")
    report = ti.xcom_pull(task_ids="reprocess")
    ok, refused = report["cycles"]
    assert ok["state"] == "success" and ok["fallback"] is None
    assert refused["state"] == "failed"
    assert refused["fallback"]["status"] == "error" and refused["fallback"]["http_status"] == 400
    assert "BillingCoreRequestError" in refused["fallback"]["error"]
    assert (report["all_succeeded"], report["all_resolved"]) == (False, False)
    assert len(core_api.requests) == 1  # a 4xx is not retried


@pytest.mark.timeout(180)
def test_unknown_psp_triggers_nothing(make_parent, scenario, core_api):
    dag = make_parent("test_reprocess_unknown_psp", psp="paypal")
    dag_run = dag.test(logical_date=PARENT_LOGICAL_DATE)
    assert dag_run.get_task_instance("reprocess").state == "failed"
    key = remediation_key("test_reprocess_unknown_psp", dag_run.run_id, "reprocess", -1)
    assert child_runs(key) == {} and core_api.requests == []
