"""A DAG with a TransactionCorrectionOperator, run with ``dag.test()``; finance's answer comes
from a test thread, the package's :class:`HitlAnswerer` (AIRFLOW3-NOTES, HITL): it waits for
the task in ``awaiting_input`` and answers like the REST API's hitlDetails PATCH. A timeout is
the scheduler's own awaiting_input sweep, run by the thread once the deadline has passed
(``dag.test`` runs no scheduler)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from correction_data import (
    EXPECTED,
    EXPECTED_AMOUNT,
    WINDOW_END,
    WINDOW_START,
    audit_rows,
    checksum,
    statuses,
)

from airflow_recon_provider.devtools.demo_airflow import HitlAnswerer

pytestmark = [pytest.mark.dags, pytest.mark.integration]

TASK_ID = "correct_transactions"
#: what dag.test() records as the triggering user (AIRFLOW3-NOTES)
DAG_TEST_USER = "dag_test"


def build_dag(dag_id: str, artifacts, **kwargs: Any):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    from airflow_recon_provider.operators.corrections import TransactionCorrectionOperator

    with DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        params={"psp": "stripe", "kinds": ["status_mismatch", "amount_mismatch"]},
    ) as dag:
        correct = TransactionCorrectionOperator(
            task_id=TASK_ID,
            psp="{{ params.psp }}",
            window_start=WINDOW_START,
            window_end=WINDOW_END,
            divergence_kinds="{{ params.kinds }}",
            incident_id="INCIDENT-472",
            approvers=["finance.bia", DAG_TEST_USER],
            artifacts_dir=str(artifacts),
            **kwargs,
        )
        correct >> EmptyOperator(task_id="communicate")
    return dag


def run_with_answer(register_dag, dag, answerer: HitlAnswerer):
    register_dag(dag)
    answerer.start()
    dag_run = dag.test()
    answerer.finish()
    return dag_run


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def result_of(dag_run) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == TASK_ID,
                XComModel.key == "return_value",
            )
        )
    return XComModel.deserialize_value(type("X", (), {"value": value})())


@pytest.mark.timeout(180)
def test_approved_by_finance_applies_the_dry_run(register_dag, seeded, incident, tmp_path):
    dag = build_dag("recon_correction_approve", tmp_path)
    answerer = HitlAnswerer(dag.dag_id, chosen="Approve", user="finance.bia")
    dag_run = run_with_answer(register_dag, dag, answerer)

    assert states(dag_run) == {TASK_ID: "success", "communicate": "success"}
    request = answerer.request
    assert request["options"] == ["Approve", "Reject"] and request["defaults"] == ["Reject"]
    assert {a["id"] for a in request["assignees"]} == {"finance.bia", DAG_TEST_USER}
    assert "4 transaction(s)" in request["subject"]
    body = request["body"]
    assert "**4 transaction(s) to correct, 43.50**" in body
    assert "| status_mismatch | 4 | 43.50 |" in body  # counts and amounts
    assert "| 101 | s1 | capture | status_mismatch | authorized | captured | 10.00 BRL |" in body  # sample
    assert "| amount_mismatch | 1 | 0.50 |" in body  # not corrected here: needs a PSP ticket
    assert "requested by: dag\\_test (run " in body  # markdown-escaped

    result = result_of(dag_run)
    assert result["outcome"] == "applied" and result["approved_by"] == "finance.bia"
    assert result["result"]["applied"] == 4 and result["result"]["applied_amount_minor"] == EXPECTED_AMOUNT
    assert result["dry_run"]["proposal_count"] == 4 and "sample" not in result["dry_run"]
    assert {tid: s for tid, s in statuses(seeded).items() if tid in EXPECTED} == {
        tid: after for tid, (_, after) in EXPECTED.items()
    }
    audit = audit_rows(seeded)
    assert [(a[1], a[4], a[5], a[6]) for a in audit] == [
        (tid, DAG_TEST_USER, "finance.bia", dag_run.run_id) for tid in sorted(EXPECTED)
    ]
    steps = seeded.execute(
        "SELECT outcome FROM recon.incident_events WHERE incident_id = %s ORDER BY id", (incident,)
    ).fetchall()
    assert [s[0] for s in steps] == ["approval_requested", "applied"]


@pytest.mark.timeout(180)
def test_rejected_applies_nothing(register_dag, seeded, incident, tmp_path):
    before = checksum(seeded)
    dag = build_dag("recon_correction_reject", tmp_path)
    dag_run = run_with_answer(
        register_dag, dag, HitlAnswerer(dag.dag_id, chosen="Reject", user="finance.bia")
    )

    assert states(dag_run) == {TASK_ID: "success", "communicate": "success"}
    result = result_of(dag_run)
    assert (result["outcome"], result["decided_by"], result["result"]) == ("rejected", "finance.bia", None)
    assert checksum(seeded) == before


@pytest.mark.timeout(180)
def test_self_approval_is_refused_and_applies_nothing(register_dag, seeded, incident, tmp_path):
    before = checksum(seeded)
    dag = build_dag("recon_correction_self", tmp_path)
    dag_run = run_with_answer(
        register_dag, dag, HitlAnswerer(dag.dag_id, chosen="Approve", user=DAG_TEST_USER)
    )

    assert states(dag_run)[TASK_ID] == "failed"
    assert checksum(seeded) == before
    (reason,) = seeded.execute(
        "SELECT details->>'reason' FROM recon.incident_events WHERE outcome = 'approval_refused'"
    ).fetchone()
    assert "dag_test requested this correction" in reason and "cannot also approve" in reason


@pytest.mark.timeout(180)
def test_no_answer_times_out_as_reject(register_dag, seeded, tmp_path):
    before = checksum(seeded)
    dag = build_dag("recon_correction_timeout", tmp_path, approval_timeout=1)
    dag_run = run_with_answer(register_dag, dag, HitlAnswerer(dag.dag_id, chosen=None))

    assert states(dag_run)[TASK_ID] == "success"
    result = result_of(dag_run)
    assert result["outcome"] == "timed_out" and result["result"] is None
    assert checksum(seeded) == before
