"""The reconciliation operators on their own (outside a DAG run): pause, failure recording,
and the cycle taken from the run's data interval."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from airflow_recon_provider.operators.reconciliation import (
    FetchPspStatementsOperator,
    MatchTransactionsOperator,
    ReconciliationScopeOperator,
)
from airflow_recon_provider.reconciliation.errors import UnknownPspError

START = datetime(2026, 11, 20, 10, tzinfo=UTC)
END = datetime(2026, 11, 20, 11, tzinfo=UTC)


def context(**extra):
    return {
        "run_id": "manual__test",
        "dag_run": None,
        "data_interval_start": START,
        "data_interval_end": END,
        **extra,
    }


def logs(db):
    return db.execute(
        "SELECT psp, status, divergent_amount_minor, divergent_count, notes, cycle_start, cycle_end"
        " FROM payment_reconciliation_logs ORDER BY id"
    ).fetchall()


@pytest.fixture
def paused_stripe(db, airflow_conns, monkeypatch):
    monkeypatch.setenv("RECON_CONFIG", json.dumps({"psps": ["stripe"]}))
    db.execute(
        "INSERT INTO recon.controls (psp, state, reason, actor) VALUES"
        " ('stripe', 'paused', 'INCIDENT-472', 'oncall@platform.io')"
    )
    return db


@pytest.mark.parametrize("operator_class", [FetchPspStatementsOperator, MatchTransactionsOperator])
def test_paused_psp_is_skipped_by_both_tasks(paused_stripe, operator_class, capfd):
    task = operator_class(task_id="t", psp="stripe")
    with pytest.raises(AirflowSkipException, match=r"PSP stripe is paused.*oncall@platform.io.*INCIDENT-472"):
        task.execute(context())
    assert "paused in recon.controls" in capfd.readouterr().out
    assert logs(paused_stripe) == []


def test_match_records_failed_and_reraises(db, airflow_conns, monkeypatch):
    monkeypatch.setenv("RECON_CONFIG", json.dumps({"psps": ["adyen"]}))
    task = MatchTransactionsOperator(task_id="match_transactions", psp="stripe")
    with pytest.raises(UnknownPspError):
        task.execute(context())
    ((psp, status, amount, count, notes, start, end),) = logs(db)
    assert (psp, status, amount, count, start, end) == ("stripe", "failed", 0, 0, START, END)
    assert notes.startswith("match_transactions failed (run manual__test): UnknownPspError")


def test_match_success_carries_divergence_in_its_figures(db, airflow_conns, monkeypatch):
    monkeypatch.setenv("RECON_CONFIG", json.dumps({"psps": ["stripe"]}))
    db.execute("INSERT INTO payment_intents (id, provider, provider_reference) VALUES (1, 'stripe', 'r1')")
    db.execute(
        "INSERT INTO payment_transactions (intent_id, transaction_type, status, amount_minor, currency,"
        " created_at) VALUES (1, 'capture', 'captured', 2500, 'BRL', '2026-11-20T10:30Z')"
    )
    task = MatchTransactionsOperator(
        task_id="match_transactions", psp="stripe", cycle_start="2026-11-20T10:00:00Z"
    )
    summary = task.execute(context(data_interval_start=None, data_interval_end=None))
    assert (
        summary["divergent_count"] == 1 and summary["by_kind"]["missing_in_statement"]["amount_minor"] == 2500
    )
    assert [r[1:4] for r in logs(db)] == [("success", 2500, 1)]


def test_scope_lists_configured_psps_and_validates_cycle_start(db, airflow_conns, monkeypatch):
    monkeypatch.setenv("RECON_CONFIG", json.dumps({"psps": ["stripe", "adyen"]}))
    scope = ReconciliationScopeOperator(task_id="scope_cycle", psp="", cycle_start="")
    assert scope.execute(context()) == [
        {"psp": psp, "cycle_start": START.isoformat(), "cycle_end": END.isoformat()}
        for psp in ("stripe", "adyen")
    ]
    with pytest.raises(UnknownPspError, match="unknown PSP 'paypal'"):
        ReconciliationScopeOperator(task_id="scope_cycle", psp="paypal").execute(context())
    with pytest.raises(ValueError, match="not the start of an hourly cycle"):
        ReconciliationScopeOperator(task_id="scope_cycle", cycle_start="2026-11-20T10:15:00Z").execute(
            context()
        )
