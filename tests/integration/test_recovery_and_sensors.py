"""RecoveryTrigger against a real PostgreSQL, and the DivergenceSensor / RecoverySensor
run inside a DAG with ``dag.test()``."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from airflow_recon_provider.reconciliation.window import floor_cycle
from airflow_recon_provider.triggers.recovery import RecoveryTrigger

NOW_CYCLE = floor_cycle(datetime.now(UTC))
NOW = NOW_CYCLE + timedelta(minutes=5)
START = NOW_CYCLE - timedelta(hours=3)


@pytest.fixture
def psp_data(db, airflow_conns, monkeypatch):
    monkeypatch.setenv("RECON_CONFIG", json.dumps({"psps": ["stripe"]}))
    db.execute(
        "INSERT INTO payment_intents (id, provider, provider_reference)"
        " VALUES (1, 'stripe', 'r1'), (2, 'stripe', 'r2')"
    )
    return db


def _tx(db, intent_id: int, amount: int, minutes_before_now: int) -> None:
    db.execute(
        "INSERT INTO payment_transactions"
        " (intent_id, transaction_type, status, amount_minor, currency, created_at)"
        " VALUES (%s, 'capture', 'captured', %s, 'BRL', %s)",
        (intent_id, amount, NOW_CYCLE - timedelta(minutes=minutes_before_now)),
    )


def _cycles(db, *states: str) -> None:
    """Log rows for the latest cycles, oldest first."""
    for n, state in enumerate(states):
        start = NOW_CYCLE - timedelta(hours=len(states) - n)
        db.execute(
            "INSERT INTO payment_reconciliation_logs (psp, cycle_start, cycle_end, status)"
            " VALUES ('stripe', %s, %s, %s)",
            (start, start + timedelta(hours=1), state),
        )


def _check(**kwargs) -> dict:
    trigger = RecoveryTrigger(
        psp="stripe", window_start=START.isoformat(), window_end=NOW_CYCLE.isoformat(), **kwargs
    )
    return asyncio.run(trigger.check(now=NOW))


def test_recovered_needs_small_amount_few_keys_and_two_successful_cycles(psp_data):
    _tx(psp_data, 1, 49_999, 30)  # missing in statement: 49,999 < 50,000
    _cycles(psp_data, "failed", "success", "success")
    result = _check()
    assert result["status"] == "recovered"
    assert result["divergent_amount_minor"] == 49_999 and result["divergent_count"] == 1
    assert result["latest_cycle_states"] == ["success", "success"]


def test_not_recovered_at_the_amount_threshold(psp_data):
    _tx(psp_data, 1, 50_000, 30)
    _cycles(psp_data, "success", "success")
    result = _check()
    assert result["status"] == "not_recovered" and result["amounts_recovered"] is False


def test_not_recovered_while_the_latest_cycle_failed(psp_data):
    _cycles(psp_data, "success", "success", "failed")
    assert _check()["latest_cycle_states"] == ["failed", "success"]
    assert _check()["status"] == "not_recovered"
    # a later successful re-run of the failed cycle supersedes its failed row
    start = NOW_CYCLE - timedelta(hours=1)
    psp_data.execute(
        "INSERT INTO payment_reconciliation_logs (psp, cycle_start, cycle_end, status, created_at)"
        " VALUES ('stripe', %s, %s, 'success', now() + interval '1 minute')",
        (start, NOW_CYCLE),
    )
    assert _check()["status"] == "recovered"


def test_not_recovered_with_ten_divergent_keys(psp_data):
    psp_data.execute(
        "INSERT INTO payment_intents (id, provider, provider_reference)"
        " SELECT 100 + g, 'stripe', 'k' || g FROM generate_series(1, 10) g"
    )
    for n in range(10):
        _tx(psp_data, 101 + n, 1, 40)
    _cycles(psp_data, "success", "success")
    result = _check()
    assert result["divergent_count"] == 10 and result["status"] == "not_recovered"


def test_recovery_bad_input_raises_and_run_keeps_waiting(psp_data):
    with pytest.raises(Exception, match="unknown PSP 'paypal'"):
        asyncio.run(
            RecoveryTrigger(psp="paypal", window_start=START.isoformat(), window_end=NOW.isoformat()).check()
        )
    with pytest.raises(Exception, match="must be after its start"):
        asyncio.run(
            RecoveryTrigger(psp="stripe", window_start=NOW.isoformat(), window_end=START.isoformat()).check()
        )


def test_recovery_trigger_run_yields_when_recovered(psp_data):
    _cycles(psp_data, "success", "success")
    trigger = RecoveryTrigger(
        psp="stripe", window_start=START.isoformat(), window_end=NOW_CYCLE.isoformat(), poll_interval=0.05
    )

    async def events():
        return [event async for event in trigger.run()]

    (event,) = asyncio.run(asyncio.wait_for(events(), timeout=60))
    assert event.payload["status"] == "recovered"
    path, kwargs = trigger.serialize()
    assert path == "airflow_recon_provider.triggers.recovery.RecoveryTrigger"
    assert RecoveryTrigger(**kwargs).serialize() == (path, kwargs)


def test_divergence_sensor_poke_mode(psp_data):
    from airflow_recon_provider.sensors.divergence import DivergenceSensor

    sensor = DivergenceSensor(task_id="detect", psps=["stripe"], deferrable=False)
    _cycles(psp_data, "success", "success", "success")
    assert sensor.poke({}).is_done is False
    _tx(psp_data, 1, 600_000, 30)
    result = sensor.poke({})
    assert result.is_done and result.xcom_value["divergent_amount_minor"] == 600_000


def _when_deferred(dag_id: str, task_id: str, action, timeout_s: float = 120) -> threading.Thread:
    """Run ``action`` once the task has started and handed over to its trigger. Under
    dag.test a deferred task is set back to QUEUED while its trigger runs inline, so
    "deferred or queued after having started" is the signal."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with create_session() as session:
                row = (
                    session.query(TaskInstance.state, TaskInstance.start_date)
                    .filter(TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id)
                    .one_or_none()
                )
            if row and row[1] is not None and row[0] in ("deferred", "queued"):
                action()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.timeout(180)
def test_sensors_in_a_dag_run(psp_data, db_url, register_dag):
    """Both sensors, deferrable, in one DAG run: the divergence alert is already present
    (the sensor returns it on its first poke), the window has not recovered, so the
    recovery sensor defers; the statement line that clears the divergence arrives while
    its trigger waits (inline under dag.test), and the run completes. The ledger booked the
    capture from the start: it agrees with the statement once the line arrives."""
    import psycopg
    from airflow.sdk import DAG

    from airflow_recon_provider.sensors.divergence import DivergenceSensor
    from airflow_recon_provider.sensors.recovery import RecoverySensor

    _tx(psp_data, 1, 600_000, 30)
    psp_data.execute(
        "INSERT INTO ledger.transactions (psp, provider_reference, status, amount_minor, currency,"
        " occurred_at) VALUES ('stripe', 'r1', 'captured', 600000, 'BRL', %s)",
        (NOW_CYCLE - timedelta(minutes=30),),
    )
    _cycles(psp_data, "success", "success", "success")
    dag_id = "recon_test_sensors"
    with DAG(dag_id=dag_id, schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC)) as dag:
        detect = DivergenceSensor(task_id="detect", psps=["stripe"], timeout=120, poll_interval=1)
        recover = RecoverySensor(
            task_id="recover",
            psp="stripe",
            window_start=START.isoformat(),
            window_end=(NOW_CYCLE + timedelta(hours=1)).isoformat(),
            timeout=120,
            poll_interval=0.5,
        )
        detect >> recover
    register_dag(dag)

    def statement_arrives() -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO psp_statement_lines (psp, provider_reference, transaction_type, status,"
                " amount_minor, currency, occurred_at, statement_id)"
                " VALUES ('stripe', 'r1', 'capture', 'captured', 600000, 'BRL', %s, 's')",
                (NOW_CYCLE - timedelta(minutes=30),),
            )

    watcher = _when_deferred(dag_id, "recover", statement_arrives)
    run = dag.test()
    watcher.join(timeout=5)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"detect": "success", "recover": "success"}, states
    detected = run.get_task_instance("detect").xcom_pull(task_ids="detect")
    assert detected["psp"] == "stripe" and detected["reason"] == "amount"
    assert detected["divergent_amount_minor"] == 600_000
    recovered = run.get_task_instance("recover").xcom_pull(task_ids="recover")
    assert recovered["status"] == "recovered" and recovered["divergent_count"] == 0
    assert recovered["ledger"]["met"] is True and recovered["ledger"]["differing_count"] == 0
