"""Critérios de Recuperação 3, "Relatório financeiro alinhado com extratos PSP", against a real
PostgreSQL: the recovery trigger compares ``ledger.transactions`` (connection
``payments_ledger_db``) with the PSP's statement per status and currency, beside the
gateway's; and the remediation's recovery step (the real ``RecoverySensor`` and its trigger,
``dag.test()``) does not recover a window whose gateway and statement agree while the ledger
does not — the ledger's figures on the incident timeline — and recovers once the ledger is
fixed, the closing report showing the three criteria."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from airflow_recon_provider.reconciliation.errors import ConnectionMissingError, MappingError
from airflow_recon_provider.reconciliation.window import floor_cycle
from airflow_recon_provider.triggers.recovery import RecoveryTrigger

pytestmark = [pytest.mark.integration]

NOW_CYCLE = floor_cycle(datetime.now(UTC))
NOW = NOW_CYCLE + timedelta(minutes=5)
START = NOW_CYCLE - timedelta(hours=3)
#: a capture of R$ 500,00, 12 times: the gateway and the statement agree on all of them
CAPTURES = 12
AMOUNT = 50_000


def _config(monkeypatch, **stripe) -> None:
    monkeypatch.setenv("RECON_CONFIG", json.dumps({"psps": [{"name": "stripe", **stripe}, "adyen"]}))


@pytest.fixture
def agreeing(db, airflow_conns, monkeypatch):
    """stripe, last three cycles: 12 captures in the gateway and the statement alike (stripe's
    statement says ``succeeded``), the two latest cycles successful; the ledger booked the
    captures as ``captured`` — unless a test changes it."""
    _config(monkeypatch, status_mapping={"succeeded": "captured"})
    for n in range(1, CAPTURES + 1):
        at = NOW_CYCLE - timedelta(minutes=10 * n)
        db.execute(
            "INSERT INTO payment_intents (id, provider, provider_reference) VALUES (%s, 'stripe', %s)",
            (n, f"r{n}"),
        )
        db.execute(
            "INSERT INTO payment_transactions (intent_id, transaction_type, status, amount_minor, currency,"
            " created_at) VALUES (%s, 'capture', 'captured', %s, 'BRL', %s)",
            (n, AMOUNT, at),
        )
        _statement(db, f"r{n}", AMOUNT, at + timedelta(seconds=3), status="succeeded")
        _ledger(db, f"r{n}", AMOUNT, at)
    for hours in (2, 1):
        start = NOW_CYCLE - timedelta(hours=hours)
        db.execute(
            "INSERT INTO payment_reconciliation_logs (psp, cycle_start, cycle_end, status)"
            " VALUES ('stripe', %s, %s, 'success')",
            (start, start + timedelta(hours=1)),
        )
    return db


def _statement(db, ref: str, amount: int, at: datetime, *, status="succeeded", currency="BRL") -> None:
    db.execute(
        "INSERT INTO psp_statement_lines (psp, provider_reference, transaction_type, status, amount_minor,"
        " currency, occurred_at, statement_id) VALUES ('stripe', %s, 'capture', %s, %s, %s, %s, 's')",
        (ref, status, amount, currency, at),
    )


def _ledger(db, ref: str, amount: int, at: datetime, *, status="captured", currency="BRL") -> None:
    db.execute(
        "INSERT INTO ledger.transactions (psp, provider_reference, status, amount_minor, currency,"
        " occurred_at) VALUES ('stripe', %s, %s, %s, %s, %s)",
        (ref, status, amount, currency, at),
    )


def _check(end: datetime = NOW_CYCLE, **kwargs) -> dict:
    trigger = RecoveryTrigger(
        psp="stripe", window_start=START.isoformat(), window_end=end.isoformat(), **kwargs
    )
    return asyncio.run(trigger.check(now=NOW))


def _lines(result: dict) -> dict[tuple[str, str], dict]:
    return {(line["status"], line["currency"]): line for line in result["ledger"]["lines"]}


def test_gateway_and_statement_agree_but_the_ledger_does_not_until_it_is_fixed(agreeing):
    # the ledger never booked the captures: it still has them authorized
    agreeing.execute("UPDATE ledger.transactions SET status = 'authorized'")
    result = _check()
    assert (result["amounts_recovered"], result["cycles_recovered"]) == (True, True)
    assert result["divergent_count"] == 0 and result["status"] == "not_recovered"
    ledger = result["ledger"]
    assert ledger["met"] is False
    assert (ledger["differing_count"], ledger["differing_amount_minor"]) == (CAPTURES, CAPTURES * AMOUNT)
    lines = _lines(result)
    assert {k: (v["ledger_count"], v["statement_count"], v["gateway_count"]) for k, v in lines.items()} == {
        ("authorized", "BRL"): (CAPTURES, 0, 0),
        ("captured", "BRL"): (0, CAPTURES, CAPTURES),  # stripe's "succeeded", mapped
    }
    assert lines["captured", "BRL"]["statement_amount_minor"] == CAPTURES * AMOUNT

    agreeing.execute("UPDATE ledger.transactions SET status = 'captured'")
    fixed = _check()
    assert fixed["status"] == "recovered" and fixed["ledger"]["met"] is True
    assert fixed["ledger"]["differing_count"] == 0
    assert all(line["aligned"] for line in fixed["ledger"]["lines"])


def test_small_differences_are_within_the_limit_and_the_limit_is_per_psp(agreeing, monkeypatch):
    # one capture missing from the ledger: 1 row, R$ 500,00 -> not below R$ 500,00
    agreeing.execute("DELETE FROM ledger.transactions WHERE provider_reference = 'r1'")
    assert _check()["ledger"]["met"] is False
    # an amount off by 7 cents: 0 rows, R$ 0,07 -> aligned by default
    _ledger(agreeing, "r1", AMOUNT + 7, NOW_CYCLE - timedelta(minutes=10))
    result = _check()
    assert (result["ledger"]["differing_count"], result["ledger"]["differing_amount_minor"]) == (0, 7)
    assert result["status"] == "recovered"
    # exact agreement asked for stripe
    monkeypatch.setenv(
        "RECON_CONFIG",
        json.dumps(
            {
                "psps": [{"name": "stripe", "status_mapping": {"succeeded": "captured"}}],
                "thresholds": {
                    "per_psp": {"stripe": {"recovered_ledger_count": 1, "recovered_ledger_amount_minor": 1}}
                },
            }
        ),
    )
    strict = _check()
    assert strict["status"] == "not_recovered" and strict["ledger"]["max_amount_minor"] == 1


def test_the_ledgers_own_vocabulary_through_its_status_mapping(agreeing, monkeypatch):
    agreeing.execute("UPDATE ledger.transactions SET status = 'CAPT'")
    assert _check()["ledger"]["met"] is False
    _config(
        monkeypatch, status_mapping={"succeeded": "captured"}, ledger_status_mapping={"CAPT": "succeeded"}
    )
    result = _check()
    assert result["status"] == "recovered"
    assert list(_lines(result)) == [("captured", "BRL")]


def test_a_transaction_at_the_cut_off_is_in_the_same_window_on_every_side(agreeing):
    """The gateway and the ledger at 10:59:59, the PSP at 11:00:01 (and at the end of the
    window): the same key is matched by the grace period, so it is in the window on every side
    or on none; only the PSP's own lines count at their own time."""
    for n, gateway_at in ((101, START - timedelta(seconds=1)), (102, NOW_CYCLE - timedelta(seconds=1))):
        agreeing.execute(
            "INSERT INTO payment_intents (id, provider, provider_reference) VALUES (%s, 'stripe', %s)",
            (n, f"edge{n}"),
        )
        agreeing.execute(
            "INSERT INTO payment_transactions (intent_id, transaction_type, status, amount_minor, currency,"
            " created_at) VALUES (%s, 'capture', 'captured', %s, 'BRL', %s)",
            (n, 90_000 + n, gateway_at),
        )
        _statement(agreeing, f"edge{n}", 90_000 + n, gateway_at + timedelta(seconds=2))
        _ledger(agreeing, f"edge{n}", 90_000 + n, gateway_at)
    result = _check()
    assert result["ledger"]["met"] is True and result["ledger"]["differing_count"] == 0
    captured = _lines(result)["captured", "BRL"]
    assert captured["statement_count"] == captured["ledger_count"] == CAPTURES + 1
    # a line the gateway never saw counts at its own time: in the window, so it differs
    _statement(agreeing, "unknown-to-the-gateway", 70_000, NOW_CYCLE - timedelta(minutes=5))
    assert _check()["ledger"]["differing_count"] == 1


def test_a_currency_without_a_rate_is_never_taken_as_small(agreeing):
    agreeing.execute("UPDATE ledger.transactions SET currency = 'EUR' WHERE provider_reference = 'r1'")
    result = _check()
    assert result["ledger"]["unconverted_currencies"] == ["EUR"] and result["status"] == "not_recovered"
    lines = _lines(result)
    assert (lines["captured", "EUR"]["ledger_count"], lines["captured", "EUR"]["statement_count"]) == (1, 0)
    agreeing.execute(
        "INSERT INTO recon.fx_rates (currency, rate, valid_from, source) VALUES ('EUR', 6.2875, %s, 'test')",
        (START - timedelta(days=1),),
    )
    # a rate: EUR 500,00 = R$ 3.143,75 and R$ 500,00 off, in 2 rows — above the limit
    weighed = _check()
    assert weighed["ledger"]["unconverted_currencies"] == []
    assert weighed["ledger"]["differing_amount_minor"] == 50_000 + 314_375
    assert weighed["ledger"]["by_currency"] == {
        "BRL": {"differing_count": 1, "differing_amount_minor": 50_000},
        "EUR": {"differing_count": 1, "differing_amount_minor": 50_000},
    }
    assert weighed["ledger"]["fx_rates"]["EUR"]["rate"] == "6.2875"


def test_the_ledger_database_must_be_reachable_and_readable(agreeing, db_url, monkeypatch):
    with pytest.raises(ConnectionMissingError, match="'recon_no_ledger' is not defined"):
        _check(ledger_conn_id="recon_no_ledger")
    agreeing.execute("ALTER TABLE ledger.transactions DROP COLUMN currency")
    with pytest.raises(MappingError, match=r"ledger table ledger.transactions cannot be read .* currency"):
        _check()


# -- the remediation's recovery step, with the real sensor and trigger ----------------------------


@pytest.mark.timeout(240)
def test_recovery_step_records_the_ledger_figures_and_recovers_once_the_ledger_is_fixed(
    agreeing, db_url, register_dag
):
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation.incident_messages import render_closing_report_markdown
    from airflow_recon_provider.reconciliation.window import Window
    from airflow_recon_provider.remediation import RunRequest, recovery_step

    agreeing.execute("UPDATE ledger.transactions SET status = 'authorized'")
    window = Window(START, NOW_CYCLE + timedelta(hours=1))
    hook = IncidentHook()
    incident_id = hook.open_incident(
        "stripe", window=window, reason="FIN-88: ledger vs statement", actor="oncall"
    )
    scope = {"incident_id": incident_id, "psp": "stripe", **window.as_dict()}

    dag_id = "recon_test_ledger_recovery"
    with DAG(dag_id=dag_id, schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC)) as dag:
        request = RunRequest("scope")
        PythonOperator(task_id="scope", python_callable=lambda: scope) >> recovery_step(
            request, poll_interval=0.5, timeout=timedelta(seconds=150)
        )
    register_dag(dag)

    def fix_the_ledger_once_the_wait_is_recorded() -> None:
        """Finance fixes the ledger once the sensor's first check is on the timeline (then the
        sensor defers: its trigger sees the fix)."""
        with psycopg.connect(db_url, autocommit=True) as conn:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                seen = conn.execute(
                    "SELECT count(*) FROM recon.incident_events WHERE step = 'recovery.criteria'"
                ).fetchone()[0]
                if seen:
                    conn.execute("UPDATE ledger.transactions SET status = 'captured'")
                    return
                time.sleep(0.05)

    watcher = threading.Thread(target=fix_the_ledger_once_the_wait_is_recorded, daemon=True)
    watcher.start()
    run = dag.test()
    watcher.join(timeout=5)
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {
        "scope": "success",
        "recovery_criteria": "success",
    }

    checks = [e for e in hook.timeline(incident_id) if e.step == "recovery.criteria"]
    assert [e.details["state"] for e in checks] == ["waiting", "success"]
    waiting, met = checks
    # not recovered: the gateway and the statement agree, the ledger's figures say why not
    assert waiting.outcome.startswith(
        "critérios de recuperação ainda não atendidos: 1. Divergência < R$ 500,00"
    )
    assert "1. Divergência < R$ 500,00 e < 10 transações: atendido — 0 chave divergente" in waiting.outcome
    assert (
        "2. Os 2 últimos ciclos de reconciliação executaram com status success: atendido" in waiting.outcome
    )
    assert (
        "3. Relatório financeiro alinhado com extratos PSP: NÃO atendido — o ledger difere dos extratos PSP "
        "em 12 linhas e R$ 6.000,00 — authorized BRL: ledger 12 / R$ 6.000,00, extrato do PSP 0 / R$ 0,00, "
        "gateway 0 / R$ 0,00; captured BRL: ledger 0 / R$ 0,00, extrato do PSP 12 / R$ 6.000,00, "
        "gateway 12 / R$ 6.000,00 (limite: menos de 10 linhas e R$ 500,00)"
    ) in waiting.outcome
    assert waiting.details["recovery"]["ledger"]["differing_count"] == CAPTURES
    assert waiting.figures is not None and waiting.figures.divergent_count == 0
    # fixed while the trigger waited: recovered, the three criteria met
    assert met.outcome.startswith("critérios de recuperação atendidos: ")
    assert (
        "3. Relatório financeiro alinhado com extratos PSP: atendido — o ledger está de acordo" in met.outcome
    )
    assert run.get_task_instance("recovery_criteria").xcom_pull(task_ids="recovery_criteria")["status"] == (
        "recovered"
    )

    report = render_closing_report_markdown(hook.closing_report(incident_id))
    section = report.split("## Critérios de Recuperação")[1]
    assert "(critérios de recuperação atendidos):" in section
    assert "- 3. Relatório financeiro alinhado com extratos PSP: atendido" in section
    assert "| captured | BRL | 12 / R$ 6.000,00 | 12 / R$ 6.000,00 | 12 / R$ 6.000,00 | alinhado |" in section
