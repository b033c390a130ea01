"""DivergenceTrigger driven with asyncio against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from airflow_recon_provider.reconciliation.window import floor_cycle
from airflow_recon_provider.triggers.divergence import DivergenceTrigger

NOW_CYCLE = floor_cycle(datetime.now(UTC))
#: a fixed "now" inside the current cycle, so no test depends on when it runs
NOW = NOW_CYCLE + timedelta(minutes=5)


@pytest.fixture
def watched(db, airflow_conns, monkeypatch):
    monkeypatch.setenv("RECON_CONFIG", json.dumps({"psps": ["stripe", "adyen"]}))
    db.execute(
        "INSERT INTO payment_intents (id, provider, provider_reference) VALUES "
        "(1,'stripe','r1'),(2,'stripe','r2'),(3,'adyen','a1')"
    )
    return db


def _gateway(db, intent_id: int, amount: int, at: datetime, ttype: str = "capture") -> None:
    db.execute(
        "INSERT INTO payment_transactions (intent_id, transaction_type, status, amount_minor, currency,"
        " created_at) VALUES (%s, %s, 'captured', %s, 'BRL', %s)",
        (intent_id, ttype, amount, at),
    )


def _statement(db, psp: str, ref: str, amount: int, at: datetime, ttype: str = "capture") -> None:
    db.execute(
        "INSERT INTO psp_statement_lines (psp, provider_reference, transaction_type, status, amount_minor,"
        " currency, occurred_at, statement_id) VALUES (%s, %s, %s, 'captured', %s, 'BRL', %s, 's')",
        (psp, ref, ttype, amount, at),
    )


def _reconciled(db, psp: str, cycles: int = 3) -> None:
    for n in range(cycles, 0, -1):
        start = NOW_CYCLE - timedelta(hours=n)
        db.execute(
            "INSERT INTO payment_reconciliation_logs (psp, cycle_start, cycle_end, status)"
            " VALUES (%s, %s, %s, 'success')",
            (psp, start, start + timedelta(hours=1)),
        )


def _poll(trigger: DivergenceTrigger) -> list[dict]:
    return asyncio.run(trigger.poll_once(set(), now=NOW))


def test_fires_on_divergent_amount_above_threshold(watched):
    at = NOW_CYCLE - timedelta(minutes=90)
    _gateway(watched, 1, 500_001, at)  # no statement line: missing_in_statement
    _gateway(watched, 2, 700, at)
    _statement(watched, "stripe", "r2", 700, at + timedelta(seconds=4))
    _reconciled(watched, "stripe")
    _reconciled(watched, "adyen")
    payloads = _poll(DivergenceTrigger(psps=["stripe", "adyen"]))
    assert len(payloads) == 1
    event = payloads[0]
    assert event["psp"] == "stripe" and event["reason"] == "amount"
    assert event["divergent_amount_minor"] == 500_001 and event["divergent_count"] == 1
    assert event["by_kind"] == {"missing_in_statement": {"count": 1, "amount_minor": 500_001}}
    assert event["window_end"] == NOW_CYCLE.isoformat()
    assert event["window_start"] == (NOW_CYCLE - timedelta(hours=3)).isoformat()
    assert event["lag_cycles"] == 0
    json.dumps(event)  # plain JSON, no pickled objects


def test_quiet_at_exactly_the_threshold(watched):
    _gateway(watched, 1, 500_000, NOW_CYCLE - timedelta(minutes=30))
    _reconciled(watched, "stripe")
    _reconciled(watched, "adyen")
    assert _poll(DivergenceTrigger(psps=["stripe"])) == []


def test_fires_on_lag_when_cycles_did_not_succeed(watched):
    _reconciled(watched, "adyen")
    # stripe: last success ended 3 cycles ago -> lag 3 > 2
    start = NOW_CYCLE - timedelta(hours=4)
    watched.execute(
        "INSERT INTO payment_reconciliation_logs (psp, cycle_start, cycle_end, status) VALUES "
        "('stripe', %s, %s, 'success'), ('stripe', %s, %s, 'failed')",
        (start, start + timedelta(hours=1), start + timedelta(hours=1), start + timedelta(hours=2)),
    )
    payloads = _poll(DivergenceTrigger())  # configured PSP list
    assert [(p["psp"], p["reason"], p["lag_cycles"]) for p in payloads] == [("stripe", "lag", 3)]


def test_never_reconciled_is_lag(watched):
    _reconciled(watched, "stripe")
    payloads = _poll(DivergenceTrigger())
    assert [(p["psp"], p["reason"], p["lag_cycles"]) for p in payloads] == [("adyen", "lag", None)]


def _logged(capsys) -> str:
    # Airflow's structured logging writes to stdout, not to the logging module's handlers
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_quiet_while_an_incident_is_open_and_fires_after_it_closes(watched, capsys):
    _gateway(watched, 1, 900_000, NOW_CYCLE - timedelta(minutes=30))
    _reconciled(watched, "stripe")
    watched.execute(
        "INSERT INTO recon.incidents (incident_id, psp, opened_by)"
        " VALUES ('INCIDENT-472', 'stripe', 'oncall')"
    )
    trigger = DivergenceTrigger(psps=["stripe"])
    assert _poll(trigger) == []
    assert "incident INCIDENT-472 is open" in _logged(capsys)
    watched.execute("UPDATE recon.incidents SET state = 'closed', closed_at = now()")
    assert [p["psp"] for p in _poll(trigger)] == ["stripe"]


def test_watch_mode_fires_once_per_breach_until_it_clears(watched):
    _gateway(watched, 1, 900_000, NOW_CYCLE - timedelta(minutes=30))
    _reconciled(watched, "stripe")
    trigger = DivergenceTrigger(psps=["stripe"], once=False)
    fired: set[str] = set()
    assert len(asyncio.run(trigger.poll_once(fired, now=NOW))) == 1
    assert asyncio.run(trigger.poll_once(fired, now=NOW)) == []  # still breached: no second event
    _statement(watched, "stripe", "r1", 900_000, NOW_CYCLE - timedelta(minutes=30))
    assert asyncio.run(trigger.poll_once(fired, now=NOW)) == []  # cleared
    assert fired == set()


def test_run_yields_one_event_and_stops(watched):
    _gateway(watched, 1, 900_000, NOW_CYCLE - timedelta(minutes=30))
    _reconciled(watched, "stripe")
    trigger = DivergenceTrigger(psps=["stripe"], poll_interval=0.05)

    async def first_events():
        return [event async for event in trigger.run()]

    events = asyncio.run(asyncio.wait_for(first_events(), timeout=60))
    assert len(events) == 1 and events[0].payload["psp"] == "stripe"


def test_errors_never_fire_and_are_logged(watched, monkeypatch, capsys):
    _reconciled(watched, "stripe")
    assert _poll(DivergenceTrigger(psps=["paypal", "stripe'--"])) == []
    logged = _logged(capsys)
    assert "PSP paypal not checked: unknown PSP 'paypal'" in logged
    assert "not a valid PSP name" in logged
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_GATEWAY_DB", "postgresql://postgres@127.0.0.1:1/none")
    assert _poll(DivergenceTrigger(psps=["stripe"])) == []
    assert "unreachable" in _logged(capsys)
    monkeypatch.delenv("AIRFLOW_CONN_BILLING_GATEWAY_DB")
    assert _poll(DivergenceTrigger(psps=["stripe"])) == []
    assert "'billing_gateway_db' is not defined" in _logged(capsys)


def test_serialize_round_trip():
    trigger = DivergenceTrigger(psps=["stripe"], lookback_cycles=2, poll_interval=60, once=False)
    path, kwargs = trigger.serialize()
    assert path == "airflow_recon_provider.triggers.divergence.DivergenceTrigger"
    again = DivergenceTrigger(**kwargs)
    assert again.serialize() == (path, kwargs)
    json.dumps(kwargs)
