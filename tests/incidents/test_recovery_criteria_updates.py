"""The 30-minute finance update shows the runbook's three recovery criteria, checked when it
is sent, with their figures — the ledger's beside the PSP statement's and the gateway's —
(``billing_gateway_incident_updates`` with ``dag.test()``, real PostgreSQL, the recording SMTP
server and the Slack stand-in)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from incident_support import WINDOW_END, WINDOW_START, next_slot

from airflow_recon_provider.hooks.incidents import IncidentHook
from airflow_recon_provider.reconciliation import Window

pytestmark = [pytest.mark.dags, pytest.mark.integration]
WINDOW = Window(WINDOW_START, WINDOW_END)


def open_stripe(hook: IncidentHook) -> str:
    return hook.open_incident(
        "stripe", window=WINDOW, reason="divergence above the alert threshold", actor="watch"
    )


def update_text(dag, at, smtp) -> str:
    """Run the updates DAG for the slot ``at``; the plain text of the e-mail it sent."""
    assert dag.test(logical_date=at).state == "success"
    return smtp.messages[-1].get_body(preferencelist=("plain",)).get_content()


def _ledger(db, ref: str, amount: int, minute: int, *, status: str = "captured") -> None:
    db.execute(
        "INSERT INTO ledger.transactions (psp, provider_reference, status, amount_minor, currency,"
        " occurred_at) VALUES ('stripe', %s, %s, %s, 'BRL', %s)",
        (ref, status, amount, f"2026-11-20T10:{minute:02d}:00Z"),
    )


@pytest.mark.timeout(180)
def test_updates_show_the_three_criteria_and_the_ledgers_figures(
    updates_dag, divergent_psp, finance_conns, monkeypatch
):
    # stripe asks for exact agreement of its ledger with its statement
    monkeypatch.setenv(
        "RECON_CONFIG",
        json.dumps(
            {
                "psps": ["stripe", "adyen"],
                "thresholds": {
                    "per_psp": {"stripe": {"recovered_ledger_count": 1, "recovered_ledger_amount_minor": 1}}
                },
            }
        ),
    )
    # the statement has r1 1000 and r2 450 (captured); the ledger booked r1 but r2 as authorized
    _ledger(divergent_psp, "r1", 1000, 10)
    _ledger(divergent_psp, "r2", 450, 20, status="authorized")
    smtp = finance_conns["smtp"]
    t0 = next_slot()
    open_stripe(IncidentHook())

    text = update_text(updates_dag, t0, smtp)
    assert (
        f"Affected window:      {WINDOW_START:%Y-%m-%d %H:%M} UTC to {WINDOW_END:%Y-%m-%d %H:%M} UTC" in text
    )
    assert (
        "Recovery criteria:    1. Divergence below R$ 500,00 and 10 transactions: met — 2 divergent" in text
    )
    assert "2. 2 latest reconciliation cycles succeeded: NOT met — latest cycles: none recorded" in text
    assert (
        "3. Ledger aligned with the PSP statements: NOT met — the ledger differs from the PSP statements "
        "by 1 row(s) and R$ 4,50 — authorized BRL: ledger 1 / R$ 4,50, statement 0 / R$ 0,00, gateway 0 / "
        "R$ 0,00; captured BRL: ledger 1 / R$ 10,00, statement 2 / R$ 14,50, gateway 3 / R$ 22,00 "
        "(limit: fewer than 1 row(s) and R$ 0,01)"
    ) in text
    assert "Ledger aligned with the PSP statements: NOT met" in str(finance_conns["slack"].posts[0]["blocks"])

    # finance fixes its ledger: the next update says it agrees
    divergent_psp.execute(
        "UPDATE ledger.transactions SET status = 'captured' WHERE provider_reference = 'r2'"
    )
    text = update_text(updates_dag, t0 + timedelta(minutes=30), smtp)
    assert (
        "3. Ledger aligned with the PSP statements: met — the ledger agrees with the PSP statements in "
        "every status and currency (1 line(s))"
    ) in text


@pytest.mark.timeout(180)
def test_an_update_goes_out_when_the_ledger_cannot_be_read(
    updates_dag, divergent_psp, finance_conns, monkeypatch
):
    monkeypatch.delenv("AIRFLOW_CONN_PAYMENTS_LEDGER_DB")
    open_stripe(IncidentHook())
    text = update_text(updates_dag, next_slot(), finance_conns["smtp"])
    assert (
        "Recovery criteria:    not checked (Airflow connection 'payments_ledger_db' is not defined)" in text
    )
