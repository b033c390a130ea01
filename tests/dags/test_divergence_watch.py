"""billing_gateway_divergence_watch: the watcher's trigger, and a run that opens the
incident and starts billing_gateway_remediation by itself (once per open incident)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from airflow_recon_provider.operators.watch import alerts_from_asset_events
from airflow_recon_provider.reconciliation.window import floor_cycle
from airflow_recon_provider.triggers.divergence import DivergenceTrigger


def test_the_asset_is_watched_by_the_divergence_trigger(dagbag):
    dag = dagbag.dags["billing_gateway_divergence_watch"]
    (asset,) = dag.timetable.asset_condition.objects
    (watcher,) = asset.watchers
    assert isinstance(watcher.trigger, DivergenceTrigger)
    assert watcher.trigger.once is False  # keeps watching after an event
    assert [t.task_id for t in dag.topological_sort()] == [
        "collect_alerts",
        "open_incidents",
        "start_remediation",
        "page_oncall",  # Detecção 1: the alert in PagerDuty (tests/pagerduty)
    ]


def test_alerts_come_from_trigger_payloads_newest_per_psp():
    payload = {"status": "alert", "psp": "stripe", "reason": "amount"}
    later = {**payload, "reason": "amount,lag"}
    events = {
        "asset": [
            SimpleNamespace(extra={"from_trigger": True, "payload": payload}),
            SimpleNamespace(extra={"from_trigger": True, "payload": later}),
            SimpleNamespace(extra={"manual": True}),
        ]
    }
    assert alerts_from_asset_events(events) == [later]
    assert alerts_from_asset_events(None) == []


@pytest.fixture
def now_cycle() -> datetime:
    """The current hourly cycle when the data is seeded (the watch reads the clock itself)."""
    return floor_cycle(datetime.now(UTC))


@pytest.fixture
def breached(db, airflow_conns, monkeypatch, now_cycle):
    monkeypatch.setenv("RECON_CONFIG", json.dumps({"psps": ["stripe", "adyen"]}))
    db.execute("INSERT INTO payment_intents (id, provider, provider_reference) VALUES (1, 'stripe', 'r1')")
    db.execute(
        "INSERT INTO payment_transactions (intent_id, transaction_type, status, amount_minor, currency,"
        " created_at) VALUES (1, 'capture', 'captured', 750000, 'BRL', %s)",
        (now_cycle - timedelta(minutes=40),),
    )
    for psp in ("stripe", "adyen"):
        for n in (3, 2, 1):
            start = now_cycle - timedelta(hours=n)
            db.execute(
                "INSERT INTO payment_reconciliation_logs (psp, cycle_start, cycle_end, status)"
                " VALUES (%s, %s, %s, 'success')",
                (psp, start, start + timedelta(hours=1)),
            )
    return db


def _remediation_runs():
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return [
            (run.run_id, run.conf)
            for run in session.query(DagRun).filter(DagRun.dag_id == "billing_gateway_remediation")
        ]


@pytest.mark.timeout(180)
def test_a_breach_opens_the_incident_and_starts_remediation_once(breached, now_cycle, dagbag, register_dag):
    register_dag(dagbag.dags["billing_gateway_remediation"])  # the DAG the watch triggers
    watch = dagbag.dags["billing_gateway_divergence_watch"]
    before = {run_id for run_id, _ in _remediation_runs()}

    run = watch.test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["collect_alerts"] == "success" and states["open_incidents"] == "success"
    (incident_id, psp, state, reason) = breached.execute(
        "SELECT incident_id, psp, state, reason FROM recon.incidents"
    ).fetchone()
    assert psp == "stripe" and state == "open" and "amount" in reason
    started = [(r, c) for r, c in _remediation_runs() if r not in before]
    # the watch's window ends at the current cycle: the one seeded, or the next if an hour
    # began between seeding and the run (the breach is inside both)
    window_end = datetime.fromisoformat(started[0][1]["window_end"]) if started else None
    assert window_end in (now_cycle, now_cycle + timedelta(hours=1)), started
    assert started == [
        (
            f"watch__{incident_id}",
            {
                "psp": "stripe",
                "window_start": (window_end - timedelta(hours=3)).isoformat(),
                "window_end": window_end.isoformat(),
                "incident_id": incident_id,
                "dry_run": False,
            },
        )
    ]

    # still breached, but the incident is open: no second incident, no second remediation
    again = watch.test()
    assert {ti.task_id: ti.state for ti in again.get_task_instances()}["collect_alerts"] == "success"
    assert breached.execute("SELECT count(*) FROM recon.incidents").fetchone()[0] == 1
    assert [r for r, _ in _remediation_runs() if r not in before] == [f"watch__{incident_id}"]
