"""FinanceNotifier against a real SMTP server and a stand-in for Slack's API: the update in
plain text and HTML, Slack blocks, the delivery log, the containment notice, bad input."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from incident_support import SENDER, WINDOW_END, WINDOW_START

from airflow_recon_provider.hooks.incidents import IncidentHook
from airflow_recon_provider.notifications.finance import (
    FinanceDeliveryError,
    FinanceNotifier,
    send_containment_notice,
)
from airflow_recon_provider.reconciliation import ConfigError, ConnectionMissingError, UnknownPspError, Window
from airflow_recon_provider.reconciliation.incidents import (
    IncidentIdError,
    IncidentNotFoundError,
    Step,
)

pytestmark = pytest.mark.integration

WINDOW = Window(WINDOW_START, WINDOW_END)


def subject(message) -> str:
    # a folded Subject reads back with the folding space in front
    return message["Subject"].strip()


def bodies(message) -> tuple[str, str]:
    """(plain text, HTML) of a multipart/alternative e-mail."""
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text, html


def counts(db) -> tuple[int, int, int]:
    return tuple(
        db.execute(f"SELECT count(*) FROM recon.{table}").fetchone()[0]
        for table in ("incidents", "incident_events", "notifications")
    )


@pytest.fixture
def incident(divergent_psp, finance_conns) -> str:
    hook = IncidentHook()
    incident_id = hook.open_incident(
        "stripe",
        window=WINDOW,
        reason="divergence <above> R$ 5.000",
        actor="oncall",
        figures=hook.gateway.summary("stripe", WINDOW),
    )
    hook.record_event(incident_id, step="reprocess", outcome="3 cycles re-run", actor="alice", run_id="r-1")
    hook.set_psp_ticket(incident_id, "STRIPE-8812", actor="alice")
    return incident_id


def test_direct_call_sends_text_and_html_email_and_a_slack_message(incident, finance_conns, divergent_psp):
    smtp, slack = finance_conns["smtp"], finance_conns["slack"]
    FinanceNotifier(incident_id=incident, recipients="finance@platform.io, controller@platform.io").notify({})

    (message,) = smtp.messages
    assert smtp.envelopes == [(SENDER, ["finance@platform.io", "controller@platform.io"])]
    assert subject(message).startswith(f"[{incident}] atualização da reconciliação de stripe")
    assert "34,0909% (R$ 7,50) divergentes" in subject(message)
    assert message["From"] == SENDER
    text, html = bodies(message)
    for body in (text, html):
        assert "34,0909% — R$ 7,50 divergentes em 2 transações de R$ 22,00 processados pelo gateway" in body
        assert "STRIPE-8812" in body
        assert "ainda sem previsão" in body
        assert "3 cycles re-run" in body and "Incidente aberto" in body and "Ticket do PSP registrado" in body
        assert "desde a abertura do incidente" in body
    # the reason is escaped in HTML, never markup
    assert "divergence &lt;above&gt; R$ 5.000" in html and "<above>" not in html
    assert "<table style=" in html

    (post,) = slack.posts
    assert slack.authorizations == ["Bearer xoxb-test-token"]
    assert post["channel"] == "#billing-incidents"
    assert post["text"] == subject(message)
    blocks = post["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": f"{incident} · PSP stripe · atualização do incidente de reconciliação",
            "emoji": False,
        },
    }
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in blocks[1]["fields"]}
    assert fields["*Ticket do PSP*"] == "STRIPE-8812"
    assert fields["*Divergência agora*"].startswith("34,0909% — R$ 7,50 divergentes")
    steps = next(b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b)
    assert "*reprocess* — 3 cycles re-run (alice)" in steps

    # logged per channel, with what Slack answered; the timeline says an update went out
    hook = IncidentHook()
    deliveries = hook.deliveries(incident)
    assert [(d.channel, d.kind, d.status, d.attempts) for d in deliveries] == [
        ("email", "update", "sent", 1),
        ("slack", "update", "sent", 1),
    ]
    assert deliveries[1].response["ts"] == "1700000000.000001"
    assert deliveries[0].figures.divergent_amount_minor == 750
    last = hook.timeline(incident)[-1]
    assert last.step == Step.UPDATE and "enviada por e-mail e Slack" in last.outcome
    assert last.figures.divergence_pct == 34.0909


def test_english_when_configured(incident, finance_conns, divergent_psp, monkeypatch):
    """``[recon] language = en``: the same update, its Slack message and its timeline text in
    English, amounts in the English format; the runbook's steps by their English names."""
    monkeypatch.setenv("AIRFLOW__RECON__LANGUAGE", "en")
    FinanceNotifier(incident_id=incident).notify({})
    (message,) = finance_conns["smtp"].messages
    assert subject(message).startswith(f"[{incident}] stripe reconciliation update")
    assert "34.0909% (BRL 7.50) divergent" in subject(message)
    text, html = bodies(message)
    for body in (text, html):
        assert "BRL 7.50 divergent in 2 transactions of BRL 22.00 processed by the gateway" in body
        assert "Detection — Incident opened" in body and "Communication — PSP ticket recorded" in body
        assert "divergentes" not in body and "Incidente" not in body
    assert '<html lang="en">' in html
    (post,) = finance_conns["slack"].posts
    assert post["text"] == subject(message)
    last = IncidentHook().timeline(incident)[-1]
    assert last.step == Step.UPDATE and "sent by e-mail and Slack" in last.outcome


def test_slack_incoming_webhook_connection(incident, finance_conns, httpserver, monkeypatch):
    posted = []
    httpserver.expect_request("/services/T000/B000/XXXX", method="POST").respond_with_handler(
        lambda request: (posted.append(json.loads(request.data)), "ok")[1]
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_INCIDENTS",
        json.dumps({"conn_type": "slackwebhook", "password": httpserver.url_for("/services/T000/B000/XXXX")}),
    )
    FinanceNotifier(incident_id=incident).notify({})
    (body,) = posted
    assert body["text"].startswith(f"[{incident}] atualização da reconciliação de stripe")
    assert body["blocks"][0]["type"] == "header"
    assert [d.response for d in IncidentHook().deliveries(incident) if d.channel == "slack"] == [
        {"status": 200, "via": "webhook"}
    ]


def test_slack_error_is_recorded_and_raised_while_email_goes_out(incident, finance_conns):
    finance_conns["slack"].error = "channel_not_found"
    with pytest.raises(FinanceDeliveryError, match="not delivered by slack"):
        FinanceNotifier(incident_id=incident).notify({})
    assert len(finance_conns["smtp"].messages) == 1
    email_row, slack_row = IncidentHook().deliveries(incident)
    assert (email_row.status, slack_row.status) == ("sent", "failed")
    assert "channel_not_found" in slack_row.last_error
    last = IncidentHook().timeline(incident)[-1]
    assert "falhou: Slack" in last.outcome and "nova tentativa na próxima execução" in last.outcome


def test_callback_finds_the_open_incident_of_the_runs_psp(incident, finance_conns):
    context = {"params": {"psp": "stripe"}, "run_id": "manual__cb"}
    FinanceNotifier(headline="Reprocessing of stripe failed")(context)
    (message,) = finance_conns["smtp"].messages
    text, _ = bodies(message)
    assert text.splitlines()[3] == "REPROCESSING OF STRIPE FAILED"
    assert IncidentHook().deliveries(incident)[0].run_id == "manual__cb"


def test_bad_input_gives_specific_errors_and_writes_nothing(
    incident, finance_conns, divergent_psp, monkeypatch
):
    before = counts(divergent_psp)
    with pytest.raises(IncidentIdError, match="'INC-472' is malformed"):
        FinanceNotifier(incident_id="INC-472").notify({})
    with pytest.raises(IncidentNotFoundError, match="INCIDENT-999 does not exist"):
        FinanceNotifier(incident_id="INCIDENT-999").notify({})
    with pytest.raises(IncidentNotFoundError, match="PSP adyen has no open incident"):
        FinanceNotifier(psp="adyen").notify({})
    with pytest.raises(ConfigError, match="not e-mail addresses"):
        FinanceNotifier(incident_id=incident, recipients="finance at platform").notify({})
    with pytest.raises(UnknownPspError, match="unknown PSP 'paypal'"):
        send_containment_notice("paypal", paused_by="oncall", reason="x")
    monkeypatch.delenv("AIRFLOW_CONN_SLACK_INCIDENTS")
    with pytest.raises(ConnectionMissingError, match="'slack_incidents' is not defined"):
        FinanceNotifier(incident_id=incident).notify({})
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_FINANCE")
    with pytest.raises(
        ConnectionMissingError, match=r"'smtp_finance' is not defined.*AIRFLOW_CONN_SMTP_FINANCE"
    ):
        FinanceNotifier(incident_id=incident, slack_conn_id=None).notify({})
    with pytest.raises(ConnectionMissingError, match="smtp_finance"):
        send_containment_notice("stripe", paused_by="oncall", reason="x")
    assert counts(divergent_psp) == before
    assert finance_conns["smtp"].messages == [] and finance_conns["slack"].posts == []


def test_containment_notice_tells_finance_of_the_freeze_and_the_eta(incident, finance_conns):
    eta = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
    paused_at = datetime(2026, 11, 20, 12, 5, tzinfo=UTC)
    kwargs = dict(
        paused_by="oncall", reason="PSP statements incomplete", eta_resumption=eta, paused_at=paused_at
    )
    assert send_containment_notice("stripe", **kwargs) == {"email": "sent", "slack": "sent"}
    # the same pause again: already told, nothing sent twice
    assert send_containment_notice("stripe", **kwargs) == {"email": "already sent", "slack": "already sent"}

    (message,) = finance_conns["smtp"].messages
    assert subject(message) == (
        f"[{incident}] reconciliação de stripe pausada - previsão de retomada: 2026-11-20 15:30 UTC"
    )
    text, html = bodies(message)
    for body in (text, html):
        assert "A reconciliação automática de stripe está congelada" in body
        assert "2026-11-20 12:05 UTC" in body and "oncall" in body and "PSP statements incomplete" in body
    assert "pausada" in finance_conns["slack"].texts[0]

    hook = IncidentHook()
    assert hook.get(incident).eta_resumption == eta  # the incident knows the estimate too
    steps = [e.step for e in hook.timeline(incident)]
    assert steps[-3:] == [Step.ETA, Step.CONTAINMENT_NOTICE, Step.CONTAINMENT_NOTICE]
    # and the next update says it
    FinanceNotifier(incident_id=incident).notify({})
    text, _ = bodies(finance_conns["smtp"].messages[-1])
    assert re.search(r"Previsão de retomada: +2026-11-20 15:30 UTC", text)


def test_containment_notice_without_incident_and_smtp_down(divergent_psp, finance_conns):
    smtp = finance_conns["smtp"]
    smtp.stop()
    outcome = send_containment_notice("adyen", paused_by="oncall", reason="PSP maintenance")
    assert outcome["slack"] == "sent"
    assert outcome["email"].startswith("failed: ConnectionRefusedError")
    (row,) = [d for d in IncidentHook().deliveries() if d.channel == "email"]
    assert (row.incident_id, row.kind, row.status) == (None, "containment", "failed")
    smtp.start()
    assert FinanceNotifier().resend_unsent() == {row.id: "sent"}
    (message,) = smtp.messages
    assert subject(message).startswith("[billing gateway] reconciliação de adyen pausada")
    assert FinanceNotifier().resend_unsent() == {}
