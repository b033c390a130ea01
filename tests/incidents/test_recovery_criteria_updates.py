"""The 30-minute finance update shows the runbook's three recovery criteria, checked when it
is sent, with their figures — the ledger's beside the PSP statement's and the gateway's —
(``billing_gateway_incident_updates`` with ``dag.test()``, real PostgreSQL, the recording SMTP
server and the Slack stand-in)."""

from __future__ import annotations

import json
import re
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
    assert re.search(
        rf"Janela afetada: +{WINDOW_START:%Y-%m-%d %H:%M} UTC a {WINDOW_END:%Y-%m-%d %H:%M} UTC", text
    )
    assert re.search(
        r"Critérios de Recuperação: +1\. Divergência < R\$ 500,00 e < 10 transações: atendido — 2 chaves "
        r"divergentes",
        text,
    )
    assert (
        "2. Os 2 últimos ciclos de reconciliação executaram com status success: NÃO atendido — últimos "
        "ciclos: nenhum registrado"
    ) in text
    assert (
        "3. Relatório financeiro alinhado com extratos PSP: NÃO atendido — o ledger difere dos extratos PSP "
        "em 1 linha e R$ 4,50 — authorized BRL: ledger 1 / R$ 4,50, extrato do PSP 0 / R$ 0,00, gateway 0 / "
        "R$ 0,00; captured BRL: ledger 1 / R$ 10,00, extrato do PSP 2 / R$ 14,50, gateway 3 / R$ 22,00 "
        "(limite: menos de 1 linha e R$ 0,01)"
    ) in text
    slack = str(finance_conns["slack"].posts[0]["blocks"])
    assert "Relatório financeiro alinhado com extratos PSP: NÃO atendido" in slack

    # finance fixes its ledger: the next update says it agrees
    divergent_psp.execute(
        "UPDATE ledger.transactions SET status = 'captured' WHERE provider_reference = 'r2'"
    )
    text = update_text(updates_dag, t0 + timedelta(minutes=30), smtp)
    assert (
        "3. Relatório financeiro alinhado com extratos PSP: atendido — o ledger está de acordo com os "
        "extratos PSP em todos os status e moedas (1 linha)"
    ) in text


@pytest.mark.timeout(180)
def test_an_update_goes_out_when_the_ledger_cannot_be_read(
    updates_dag, divergent_psp, finance_conns, monkeypatch
):
    monkeypatch.delenv("AIRFLOW_CONN_PAYMENTS_LEDGER_DB")
    open_stripe(IncidentHook())
    text = update_text(updates_dag, next_slot(), finance_conns["smtp"])
    assert re.search(
        r"Critérios de Recuperação: +não verificados "
        r"\(Airflow connection 'payments_ledger_db' is not defined\)",
        text,
    )
