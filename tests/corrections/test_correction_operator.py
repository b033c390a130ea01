"""TransactionCorrectionOperator outside a DAG run: the dry run, bad input, and every kind of
answer given to ``execute_complete`` directly (AIRFLOW3-NOTES: the unit-test way to resume
a HITL task). The full flow with a real approval is in ``test_correction_dag.py``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from artifact_checks import artifact_text, assert_artifact_link, assert_no_local_paths
from correction_data import EXPECTED, WINDOW_END, WINDOW_START, checksum, statuses

from airflow_recon_provider.operators.corrections import TransactionCorrectionOperator
from airflow_recon_provider.reconciliation.corrections import correction_scope
from airflow_recon_provider.reconciliation.errors import (
    ApproverNotAssignedError,
    CorrectionPolicyError,
    DivergenceKindError,
    ReconError,
    RowCapExceededError,
    SelfApprovalError,
    UnknownPspError,
    WindowError,
)
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS

pytestmark = pytest.mark.integration

RUN_ID = "manual__2026-11-20T12:30:00+00:00"
REQUESTER = "oncall.ana"


class FakeTI(SimpleNamespace):
    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def context(user: str | None = REQUESTER) -> dict[str, Any]:
    ti = FakeTI(
        dag_id="billing_gateway_data_correction", run_id=RUN_ID, task_id="correct", map_index=-1, xcoms={}
    )
    return {
        "run_id": RUN_ID,
        "ti": ti,
        "task_instance": ti,
        "dag_run": SimpleNamespace(triggering_user_name=user),
        "dag": SimpleNamespace(dag_id="billing_gateway_data_correction"),
    }


def operator(artifacts, **kwargs) -> TransactionCorrectionOperator:
    kwargs = {
        "task_id": "correct",
        "psp": "stripe",
        "window_start": WINDOW_START,
        "window_end": WINDOW_END,
        "approvers": ["finance.bia", {"id": "u-77", "name": "Finance Caio"}],
        "artifacts_dir": str(artifacts),
        **kwargs,
    }
    return TransactionCorrectionOperator(**kwargs)


def test_dry_run_only_writes_the_artifact(seeded, incident, artifacts):
    before = checksum(seeded)
    ctx = context()
    out = operator(artifacts, dry_run="True", incident_id=incident).execute(ctx)

    assert out["outcome"] == "dry_run"
    assert checksum(seeded) == before
    summary = ctx["ti"].xcoms["dry_run"]
    assert summary == out["dry_run"]
    assert summary["proposal_count"] == 4 and "sample" not in summary
    record = assert_artifact_link(summary["artifact_record"], kind="dry_run")
    assert summary["artifact"] == record["link"]
    # written once under the override base: <base>/<dag_id>/<run_id>/correction_<key>.csv
    stored = artifacts / "billing_gateway_data_correction" / "manual__2026-11-20T12_30_00_00_00"
    assert sorted(p.name for p in stored.iterdir()) == [f"correction_{out['correction_key']}.csv"]
    assert len(artifact_text(record).splitlines()) == 1 + 4
    (row,) = seeded.execute(
        "SELECT dag_id, run_id, task_id, psp, incident_id, kind FROM recon.artifacts"
    ).fetchall()
    assert row == ("billing_gateway_data_correction", RUN_ID, "correct", "stripe", incident, "dry_run")
    outcome, details = seeded.execute("SELECT outcome, details FROM recon.incident_events").fetchone()
    assert details["decision"] == "dry_run" and details["artifact_record"] == record
    assert outcome == "somente simulação: nada solicitado, nada aplicado"
    assert_no_local_paths(out, summary, details, roots=[artifacts], what="dry run")


def test_rendered_values_are_parsed_and_the_row_cap_refuses_before_asking(seeded, incident, artifacts):
    before = checksum(seeded)
    task = operator(
        artifacts, dry_run="False", row_cap="2", divergence_kinds="['status_mismatch']", incident_id=incident
    )
    with pytest.raises(RowCapExceededError, match="4 transactions, more than this run's row cap of 2"):
        task.execute(context())
    assert checksum(seeded) == before
    assert task.body is None  # nobody was asked
    (outcome, decision) = seeded.execute(
        "SELECT outcome, details->>'decision' FROM recon.incident_events"
    ).fetchone()
    assert decision == "row_cap_exceeded"
    assert outcome.startswith("mais transações que o limite de linhas da execução")


def test_nothing_to_correct_asks_nobody(seeded, artifacts):
    out = operator(artifacts, divergence_kinds="amount_mismatch,duplicate_in_gateway").execute(context())
    assert out["outcome"] == "nothing_to_correct"
    assert out["dry_run"]["manual_count"] == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"psp": "stripe'; DROP TABLE payment_transactions; --"}, UnknownPspError, "not a valid PSP name"),
        ({"psp": "acme"}, UnknownPspError, "unknown PSP 'acme'"),
        ({"window_start": WINDOW_END, "window_end": WINDOW_START}, WindowError, "must be after its start"),
        ({"window_start": "2026-11-20T10:00:00"}, WindowError, "has no timezone"),
        ({"window_end": "2027-11-20T10:00:00Z"}, WindowError, "larger than the maximum"),
        ({"divergence_kinds": "status_mismatch,bogus"}, DivergenceKindError, "bogus"),
        ({"divergence_kinds": "['status_mismatch'"}, DivergenceKindError, "not a list"),
        # one incident-id rule for every operator: INCIDENT-<number>
        ({"incident_id": "INCIDENT-1\nDROP"}, ReconError, "malformed; expected INCIDENT-<number>"),
        ({"incident_id": "inc 472"}, ReconError, "malformed; expected INCIDENT-<number>"),
        ({"incident_id": "OPS-472"}, ReconError, "malformed; expected INCIDENT-<number>"),
        ({"dry_run": "maybe"}, ReconError, "dry_run must be true or false"),
        ({"row_cap": "-5"}, ReconError, "must be a positive integer"),
    ],
)
def test_bad_input_is_a_specific_error_and_changes_nothing(seeded, artifacts, kwargs, error, match):
    before = checksum(
        seeded, "payment_transactions", "payment_reconciliation_logs", "recon.correction_proposals"
    )
    with pytest.raises(error, match=match):
        operator(artifacts, **kwargs).execute(context())
    assert (
        checksum(seeded, "payment_transactions", "payment_reconciliation_logs", "recon.correction_proposals")
        == before
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"options": ["Yes"]}, "sets options itself"),
        ({"defaults": ["Approve"]}, "sets defaults itself"),
        ({"approval_timeout": None}, "positive duration"),
        ({"approval_timeout": 0}, "must be positive"),
        ({"approvers": [""]}, "must be a user id"),
    ],
)
def test_constructor_refuses_unsafe_arguments(artifacts, kwargs, match):
    with pytest.raises(ValueError, match=match):
        operator(artifacts, **kwargs)


def test_bad_policy_fails_at_dag_parse(artifacts):
    with pytest.raises(CorrectionPolicyError, match="duplicate_in_gateway cannot have a correction rule"):
        operator(artifacts, policy={"rules": {"duplicate_in_gateway": "psp_status"}})


def test_constructor_shapes_the_request(artifacts):
    task = operator(artifacts, approval_timeout=timedelta(hours=2))
    assert task.options == ["Approve", "Reject"] and task.defaults == ["Reject"] and not task.multiple
    assert task.response_timeout == timedelta(hours=2)
    assert task.assigned_users == [
        {"id": "finance.bia", "name": "finance.bia"},
        {"id": "u-77", "name": "Finance Caio"},
    ]
    assert task.policy.as_dict()["rules"] == {"status_mismatch": "psp_status"}


# -- the answer ---------------------------------------------------------------------------------


@pytest.fixture
def pending(hook, seeded, window, artifacts, incident):
    """A dry run waiting for its answer: the resume arguments ``execute`` would have stored."""
    dry = hook.dry_run(
        "stripe",
        window,
        ALL_KINDS,
        scope=correction_scope(incident_id=incident, dag_id="d", run_id=RUN_ID),
        run_id=RUN_ID,
        requested_by=REQUESTER,
        incident_id=incident,
        artifact_dir=artifacts,
    )
    return {
        "psp": "stripe",
        "window_start": WINDOW_START,
        "window_end": WINDOW_END,
        "incident_id": incident,
        "correction_key": dry.correction_key,
        "requested_by": REQUESTER,
        "dry_run": dry.as_dict(),
        "row_cap": 100,
    }


def answer(chosen, user, **extra):
    return {
        "chosen_options": chosen,
        "params_input": {},
        "responded_at": datetime(2026, 11, 20, 13, tzinfo=UTC),
        "responded_by_user": user,
        "timedout": False,
        **extra,
    }


BIA = {"id": "finance.bia", "name": "finance.bia"}


def test_approval_applies_the_stored_set(seeded, pending, artifacts):
    out = operator(artifacts).execute_complete(context(), answer(["Approve"], BIA), correction=pending)
    assert out["outcome"] == "applied" and out["approved_by"] == "finance.bia"
    assert out["result"]["applied"] == 4 and out["result"]["conflicts"] == 0
    assert {tid: statuses(seeded)[tid] for tid in EXPECTED} == {t: a for t, (_, a) in EXPECTED.items()}
    # an assigned approver identified by id, named otherwise, may approve too (retry: nothing twice)
    again = operator(artifacts).execute_complete(
        context(), answer(["Approve"], {"id": "u-77", "name": "Finance Caio"}), correction=pending
    )
    assert again["result"]["applied"] == 0 and again["result"]["already_applied"] == 4


@pytest.mark.parametrize(
    ("event", "outcome"),
    [
        (answer(["Reject"], BIA), "rejected"),
        (answer([], BIA), "rejected"),
        # the scheduler's timeout sweep: the defaults, no user, timedout
        (answer(["Reject"], None, timedout=True), "timed_out"),
        # never an approval without a person, whatever the options say
        (answer(["Approve"], None, timedout=True), "timed_out"),
        (answer(["Approve"], BIA, timedout=True), "timed_out"),
        (answer(["Approve"], None), "timed_out"),
        (
            {"error": "The Human-in-the-loop response timeout has passed", "error_type": "timeout"},
            "timed_out",
        ),
    ],
)
def test_reject_and_timeout_apply_nothing(seeded, pending, artifacts, event, outcome):
    before = checksum(seeded)
    out = operator(artifacts).execute_complete(context(), event, correction=pending)
    assert out["outcome"] == outcome and out["result"] is None
    assert checksum(seeded) == before
    (recorded,) = seeded.execute(
        "SELECT details->>'decision' FROM recon.incident_events"
        " WHERE details->>'decision' NOT IN ('dry_run', 'approval_requested')"
    ).fetchone()
    assert recorded == outcome


@pytest.mark.parametrize(
    ("user", "error", "match"),
    [
        ({"id": "oncall.ana", "name": "Ana"}, SelfApprovalError, "Ana requested this correction"),
        ({"id": "x-1", "name": " OnCall.Ana "}, SelfApprovalError, "cannot also approve"),
        ({"id": "finance.zoe", "name": "Zoe"}, ApproverNotAssignedError, "Zoe is not an assigned approver"),
    ],
)
def test_refused_approvals_apply_nothing(seeded, pending, artifacts, user, error, match):
    before = checksum(seeded)
    with pytest.raises(error, match=match):
        operator(artifacts).execute_complete(context(), answer(["Approve"], user), correction=pending)
    assert checksum(seeded) == before


def test_unknown_option_or_missing_set_is_refused(seeded, pending, artifacts):
    with pytest.raises(ValueError, match="not in"):
        operator(artifacts).execute_complete(context(), answer(["Yes please"], BIA), correction=pending)
    with pytest.raises(ReconError, match="without its correction set"):
        operator(artifacts).execute_complete(context(), answer(["Approve"], BIA), correction=None)


def test_changed_row_is_reported_not_overwritten(seeded, pending, artifacts):
    seeded.execute("UPDATE payment_transactions SET status = 'voided' WHERE id = 101")
    out = operator(artifacts).execute_complete(context(), answer(["Approve"], BIA), correction=pending)
    result = out["result"]
    assert (result["applied"], result["conflicts"]) == (3, 1)
    assert result["conflict_details"][0]["transaction_id"] == 101
    assert statuses(seeded)[101] == "voided"
