"""ReconciliationRunsTrigger's ``run()`` loop driven with asyncio against run states the
test controls (the Task SDK helpers it calls are replaced by a scripted fake), and the
pure outcome rules of a reprocess."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from airflow_recon_provider.reconciliation.errors import WindowError
from airflow_recon_provider.reconciliation.reprocess import (
    CycleOutcome,
    CycleRun,
    core_idempotency_key,
    cycle_outcome,
    cycle_run_id,
    plan_reprocess,
    remediation_key,
    reprocess_report,
)
from airflow_recon_provider.reconciliation.window import Window
from airflow_recon_provider.triggers.reprocess import ReconciliationRunsTrigger

DAG_ID = "billing_gateway_reconciliation"
CYCLES = [
    {"cycle_start": "2026-11-20T10:00:00+00:00", "cycle_end": "2026-11-20T11:00:00+00:00", "run_id": "r10"},
    {"cycle_start": "2026-11-20T11:00:00+00:00", "cycle_end": "2026-11-20T12:00:00+00:00", "run_id": "r11"},
]


class ScriptedRuns:
    """Stands in for ``RuntimeTaskInstance.get_dagrun_state`` / ``get_task_states``: each
    poll reads the next row of ``script`` (the last row repeats); an Exception in a row is
    raised instead."""

    def __init__(self, script, task_states=None):
        self.script = list(script)
        self.task_states = task_states or {}
        self.polls = 0
        self.task_state_calls = []

    def _row(self):
        return self.script[min(self.polls, len(self.script) - 1)]

    def get_dagrun_state(self, dag_id, run_id):
        assert dag_id == DAG_ID
        row = self._row()
        if isinstance(row, Exception):
            raise row
        return row[run_id]

    def get_task_states(self, dag_id, task_ids=None, run_ids=None, **_):
        self.task_state_calls.append((dag_id, tuple(task_ids), tuple(run_ids)))
        return {run_id: self.task_states.get(run_id, {}) for run_id in run_ids}


@pytest.fixture
def runs(monkeypatch):
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    def install(script, task_states=None):
        fake = ScriptedRuns(script, task_states)
        monkeypatch.setattr(RuntimeTaskInstance, "get_dagrun_state", staticmethod(fake.get_dagrun_state))
        monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(fake.get_task_states))
        original = ReconciliationRunsTrigger.poll

        async def counted(self):
            try:
                return await original(self)
            finally:
                fake.polls += 1

        monkeypatch.setattr(ReconciliationRunsTrigger, "poll", counted)
        return fake

    return install


def trigger(*, deadline: datetime | None = None, **kwargs) -> ReconciliationRunsTrigger:
    deadline = deadline or datetime.now(UTC) + timedelta(hours=1)
    return ReconciliationRunsTrigger(
        dag_id=DAG_ID,
        psp="stripe",
        cycles=CYCLES,
        deadline=deadline.isoformat(),
        poll_interval=0.001,
        **kwargs,
    )


def first_event(t: ReconciliationRunsTrigger):
    async def go():
        return await anext(t.run())

    return asyncio.run(go()).payload


@pytest.mark.timeout(30)
def test_fires_once_every_run_finished_with_states_and_verification(runs):
    fake = runs(
        [
            {"r10": "queued", "r11": "queued"},
            {"r10": "running", "r11": "queued"},
            {"r10": "success", "r11": "running"},
            {"r10": "success", "r11": "failed"},
        ],
        task_states={"r10": {"match_transactions_0": "success"}},
    )
    event = first_event(trigger())
    assert fake.polls == 4
    assert event["status"] == "done"
    assert event["psp"] == "stripe" and event["dag_id"] == DAG_ID and event["cycles"] == CYCLES
    assert event["runs"] == {
        "r10": {"state": "success", "verify_task_states": ["success"]},
        "r11": {"state": "failed", "verify_task_states": None},
    }
    assert fake.task_state_calls[-1] == (DAG_ID, ("match_transactions",), ("r10",))


@pytest.mark.timeout(30)
def test_without_verification_the_run_state_is_enough(runs):
    fake = runs([{"r10": "success", "r11": "success"}])
    event = first_event(trigger(verify_task_id=None))
    assert event["runs"]["r10"] == {"state": "success", "verify_task_states": None}
    assert fake.task_state_calls == []


@pytest.mark.timeout(30)
def test_deadline_reports_the_states_seen_last(runs):
    fake = runs(
        [{"r10": "success", "r11": "queued"}], task_states={"r10": {"match_transactions_0": "success"}}
    )
    event = first_event(trigger(deadline=datetime.now(UTC) - timedelta(seconds=1)))
    assert fake.polls == 1
    assert event["status"] == "timeout"
    assert event["runs"]["r11"] == {"state": "queued", "verify_task_states": None}


@pytest.mark.timeout(30)
def test_transient_errors_are_retried_then_reported(runs):
    fake = runs([RuntimeError("api server restarting"), {"r10": "success", "r11": "failed"}])
    assert first_event(trigger(verify_task_id=None))["status"] == "done"
    assert fake.polls == 2

    fake = runs([ConnectionError("no api server")])
    event = first_event(trigger(max_poll_errors=3))
    assert fake.polls == 3
    assert event["status"] == "error"
    assert "ConnectionError: no api server (3 polls in a row)" in event["message"]


def test_serialize_round_trip():
    t = trigger(verify_task_id="match_transactions", max_poll_errors=4)
    path, kwargs = t.serialize()
    assert path == "airflow_recon_provider.triggers.reprocess.ReconciliationRunsTrigger"
    again = ReconciliationRunsTrigger(**kwargs)
    assert again.serialize() == (path, kwargs)
    assert again.run_ids == ["r10", "r11"]


# -- the pure rules ---------------------------------------------------------------------


def test_cycle_outcome():
    assert cycle_outcome("success", ["success"]) == CycleOutcome.SUCCESS
    assert cycle_outcome("success", None) == CycleOutcome.SUCCESS
    # the PSP's task was skipped (paused PSP) or never ran: not a reprocess
    assert cycle_outcome("success", ["skipped"]) == CycleOutcome.SKIPPED
    assert cycle_outcome("success", []) == CycleOutcome.SKIPPED
    assert cycle_outcome("failed", None) == CycleOutcome.FAILED
    assert cycle_outcome("queued", None) == CycleOutcome.TIMEOUT
    assert cycle_outcome(None, None) == CycleOutcome.TIMEOUT


def test_plan_names_are_deterministic_and_distinct():
    window = Window.parse("2026-11-20T09:30:00Z", "2026-11-20T12:00:00Z")
    key = remediation_key("billing_gateway_remediation", "manual__1", "mitigate.reprocess", -1)
    plan = plan_reprocess("stripe", window, key=key)
    assert [str(item.cycle) for item in plan] == [
        "2026-11-20T09:00Z",
        "2026-11-20T10:00Z",
        "2026-11-20T11:00Z",
    ]
    assert plan == plan_reprocess("stripe", window, key=key)
    assert plan[1].run_id == f"reprocess__stripe__20261120T1000Z__{key}"
    assert plan[1].conf == {"psp": "stripe", "cycle_start": "2026-11-20T10:00:00+00:00", "reprocess": True}
    assert CycleRun.from_dict("stripe", plan[1].as_dict()) == plan[1]
    other_run = remediation_key("billing_gateway_remediation", "manual__2", "mitigate.reprocess", -1)
    assert cycle_run_id("stripe", plan[1].cycle, other_run) != plan[1].run_id
    assert core_idempotency_key("stripe", plan[1].cycle, key) != core_idempotency_key(
        "adyen", plan[1].cycle, key
    )
    with pytest.raises(WindowError, match="covers 3 hourly cycles, more than the 2"):
        plan_reprocess("stripe", window, key=key, max_cycles=2)


def test_report_flags():
    window = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T12:00:00Z")
    ok = {"cycle_start": "a", "state": "success", "fallback": None}
    accepted = {"cycle_start": "b", "state": "failed", "fallback": {"status": "accepted"}}
    refused = {"cycle_start": "b", "state": "failed", "fallback": {"status": "error"}}
    assert reprocess_report("stripe", window, [ok, ok])["all_succeeded"] is True
    both = reprocess_report("stripe", window, [ok, accepted])
    assert (both["all_succeeded"], both["all_resolved"], both["fallback_count"]) == (False, True, 1)
    assert reprocess_report("stripe", window, [ok, refused])["all_resolved"] is False


def test_triggering_outside_a_task_is_refused():
    from airflow_recon_provider.hooks.dag_runs import trigger_dag_run
    from airflow_recon_provider.reconciliation.errors import ReprocessError

    with pytest.raises(ReprocessError, match="only be triggered from a running Airflow task"):
        trigger_dag_run(DAG_ID, "reprocess__stripe__20261120T1000Z__x", conf={"psp": "stripe"})
