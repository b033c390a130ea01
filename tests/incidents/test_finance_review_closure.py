"""Encerramento 4 — the review with finance, scheduled when an incident is closed: the closing
report, ``schedule_finance_review`` and the final update run with ``dag.test()`` against the
real PostgreSQL, the recording SMTP server and the Slack stand-in. The closing e-mail read
from the SMTP server carries a valid invitation (parsed back with icalendar) at the expected
slot, for finance and on-call; the incident's timeline and dashboard page show the review; a
retried close is the same event and no second e-mail."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from incident_support import SENDER, WINDOW_END, WINDOW_START

from airflow_recon_provider.hooks.incidents import IncidentHook
from airflow_recon_provider.reconciliation import Window
from airflow_recon_provider.reconciliation.finance_review import REVIEW_STEP

pytestmark = [pytest.mark.dags, pytest.mark.integration, pytest.mark.timeout(240)]

SP = ZoneInfo("America/Sao_Paulo")
#: Friday 2026-12-04, 15:00 in Sao Paulo: after that day's slot
CLOSED_AT = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)
#: Monday the 7th is a holiday in the test's configuration: the review is on Tuesday
EXPECTED_START = datetime(2026, 12, 8, 10, 0, tzinfo=SP)
EXPECTED_END = datetime(2026, 12, 8, 11, 0, tzinfo=SP)
ONCALL = "oncall@platform.io, sre.lead@platform.io"
UID = "{}-revisao-financeiro@airflow-recon-provider"


@pytest.fixture
def closing_dag(register_dag):
    """closing_report >> schedule_finance_review >> final_communication, as the remediation's
    close group wires them (the same step factories)."""
    from airflow.sdk import DAG, Param

    from airflow_recon_provider.remediation import (
        FormFields,
        closing_report_step,
        final_communication_step,
        finance_review_step,
    )

    class _Request:  # the incident from the form, as a single-action DAG has it
        incident_id = FormFields().incident_id

    with DAG(
        "recon_test_finance_review",
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        params={"incident_id": Param("INCIDENT-1", type="string", pattern=r"^INCIDENT-\d+$")},
    ) as dag:
        request = _Request()
        closing_report_step(request) >> finance_review_step(request) >> final_communication_step(request)
    register_dag(dag)
    return dag


@pytest.fixture
def closed_incident(divergent_psp, finance_conns, tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("AIRFLOW__RECON__ARTIFACTS_BASE_URL", f"file://{tmp_path}/store")
    monkeypatch.setenv("AIRFLOW__RECON__DASHBOARD_BASE_URL", "http://recon.example/recon")
    monkeypatch.setenv("AIRFLOW_VAR_RECON_ONCALL_RECIPIENTS", ONCALL)
    monkeypatch.setenv("RECON_CONFIG", json.dumps({"finance_review": {"holidays": ["2026-12-07"]}}))
    hook = IncidentHook()
    window = Window(WINDOW_START, WINDOW_END)
    incident_id = hook.open_incident(
        "stripe", window=window, reason="divergence above the alert threshold", actor="divergence-watch",
        run_id="watch__1", figures=hook.gateway.summary("stripe", window),
    )  # fmt: skip
    for state in ("mitigating", "recovered", "closed"):
        hook.transition(incident_id, state, actor="oncall.ana")
    divergent_psp.execute(
        "UPDATE recon.incidents SET closed_at = %s WHERE incident_id = %s", (CLOSED_AT, incident_id)
    )
    return incident_id


def _invitation(message) -> tuple[Calendar, bytes, object]:
    parts = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1, [p.get_content_type() for p in message.walk()]
    (part,) = parts
    assert part.get_param("method") == "REQUEST"
    assert part.get_filename().endswith("-revisao-financeiro.ics")
    raw = part.get_payload(decode=True)
    return Calendar.from_ical(raw), raw, part


def _reviews(db, incident_id: str) -> list[tuple[str, dict]]:
    return db.execute(
        "SELECT outcome, details FROM recon.incident_events WHERE incident_id = %s AND step = %s ORDER BY id",
        (incident_id, REVIEW_STEP),
    ).fetchall()


def _anchors(document: str) -> list[tuple[str, str]]:
    """``(href, text)`` of every ``<a>`` of an HTML document."""
    from html.parser import HTMLParser

    found: list[tuple[str, str]] = []

    class Anchors(HTMLParser):
        href: str | None = None

        def handle_starttag(self, tag, attrs):
            if tag == "a":
                self.href, self.text = dict(attrs).get("href") or "", ""

        def handle_data(self, data):
            if self.href is not None:
                self.text += data

        def handle_endtag(self, tag):
            if tag == "a" and self.href is not None:
                found.append((self.href, self.text))
                self.href = None

    Anchors().feed(document)
    return found


def test_the_closing_email_invites_finance_and_oncall_to_the_review(
    closing_dag, closed_incident, finance_conns, divergent_psp
):
    incident_id = closed_incident
    dag_run = closing_dag.test(run_conf={"incident_id": incident_id})
    assert dag_run.state == "success"
    report = dag_run.get_task_instance("closing_report").xcom_pull(task_ids="closing_report")
    report_link = report["html"]["link"]
    assert report_link.startswith("http://recon.example/recon/artifacts/")

    # the closing e-mail, read from the SMTP server: finance and on-call, with the invitation
    (message,) = finance_conns["smtp"].messages
    assert "normalizada" in message["Subject"]
    invited = ["finance@platform.io", "oncall@platform.io", "sre.lead@platform.io"]
    assert [a.strip() for a in message["To"].split(",")] == invited
    assert finance_conns["smtp"].envelopes == [(SENDER, invited)]
    calendar, raw, _ = _invitation(message)
    assert calendar["METHOD"] == "REQUEST"
    (event,) = calendar.events
    assert (event.start, event.end) == (EXPECTED_START, EXPECTED_END)
    assert b"DTSTART;TZID=America/Sao_Paulo:20261208T100000" in raw
    assert b"DTEND;TZID=America/Sao_Paulo:20261208T110000" in raw
    assert [tz["TZID"] for tz in calendar.timezones] == ["America/Sao_Paulo"]
    assert str(event["UID"]) == UID.format(incident_id.lower())
    assert str(event["ORGANIZER"]) == f"mailto:{SENDER}"
    assert [str(a) for a in event.attendees] == [f"mailto:{a}" for a in invited]
    assert str(event["URL"]) == report_link and report_link in str(event["DESCRIPTION"])
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert (
        "revisão com financeiro agendada para terça-feira, 8 de dezembro de 2026, das 10:00 às 11:00" in body
    )
    assert report_link in body
    # the HTML part: the closing report is a link a person clicks, not an address to copy
    html_body = message.get_body(preferencelist=("html",)).get_content()
    anchors = _anchors(html_body)
    assert (report_link, report_link) in anchors, anchors

    # the incident: "revisão agendada para ..." once on its timeline
    ((outcome, details),) = _reviews(divergent_psp, incident_id)
    assert outcome.startswith(
        "revisão agendada para terça-feira, 8 de dezembro de 2026, das 10:00 às 11:00 (America/Sao_Paulo)"
        " com finance@platform.io, oncall@platform.io, sre.lead@platform.io"
    )
    assert details["uid"] == UID.format(incident_id.lower()) and details["report_link"] == report_link

    # a retried close: the same review, no second event, no second e-mail
    again = closing_dag.test(run_conf={"incident_id": incident_id})
    assert again.state == "success"
    result = again.get_task_instance("schedule_finance_review").xcom_pull(task_ids="schedule_finance_review")
    assert result["scheduled"] is False and result["review"]["uid"] == details["uid"]
    assert len(_reviews(divergent_psp, incident_id)) == 1
    assert len(finance_conns["smtp"].messages) == 1

    # the dashboard's incident page shows the scheduled review
    from fastapi.testclient import TestClient

    from airflow_recon_provider.plugins.dashboard_app import create_app

    with TestClient(create_app(require_login=False)) as client:
        page = client.get(f"/incidents/{incident_id}")
        api = client.get(f"/api/incidents/{incident_id}")
    assert page.status_code == 200
    section = page.text[page.text.index('data-testid="finance-review"') :]
    assert (
        'data-testid="finance-review-when">terça-feira, 8 de dezembro de 2026, das 10:00 às 11:00 '
        "(America/Sao_Paulo)</strong>" in section
    )
    assert "oncall@platform.io" in section and UID.format(incident_id.lower()) in section
    assert f'data-step="{REVIEW_STEP}"' in page.text and "Revisão com financeiro agendada" in page.text
    assert api.json()["finance_review"]["start"] == EXPECTED_START.isoformat()


def test_a_final_update_sent_before_the_review_is_followed_by_the_invitation(
    closing_dag, closed_incident, finance_conns, divergent_psp
):
    from airflow_recon_provider.notifications.finance import FinanceNotifier

    incident_id = closed_incident
    # e.g. the incident-updates DAG between recovery and closure: the final update, no review yet
    FinanceNotifier(incident_id=incident_id).send_incident_update(incident_id)
    (first,) = finance_conns["smtp"].messages
    assert not [p for p in first.walk() if p.get_content_type() == "text/calendar"]

    assert closing_dag.test(run_conf={"incident_id": incident_id}).state == "success"
    _, invitation = finance_conns["smtp"].messages
    calendar, _, _ = _invitation(invitation)
    (event,) = calendar.events
    assert event.start == EXPECTED_START and str(event["UID"]) == UID.format(incident_id.lower())
    assert "oncall@platform.io" in invitation["To"]
    kinds = divergent_psp.execute(
        "SELECT kind, status FROM recon.notifications WHERE incident_id = %s AND channel = 'email'"
        " ORDER BY id",
        (incident_id,),
    ).fetchall()
    assert kinds == [("normalized", "sent"), ("closing_report", "sent")]

    # once: a retried close sends nothing more
    assert closing_dag.test(run_conf={"incident_id": incident_id}).state == "success"
    assert len(finance_conns["smtp"].messages) == 2


def test_the_review_needs_a_closed_incident_and_its_closing_report(closed_incident, divergent_psp):
    from airflow_recon_provider.operators.finance_review import ScheduleFinanceReviewOperator
    from airflow_recon_provider.reconciliation.incidents import IncidentIdError, IncidentInputError

    step = ScheduleFinanceReviewOperator(task_id="review", incident_id=closed_incident)
    with pytest.raises(IncidentInputError, match="has no closing report in the artifact store yet"):
        step.execute({})
    divergent_psp.execute(
        "UPDATE recon.incidents SET state = 'recovered', closed_at = NULL WHERE incident_id = %s",
        (closed_incident,),
    )
    with pytest.raises(IncidentInputError, match="is recovered: the review with finance is scheduled when"):
        step.execute({})
    bad = ScheduleFinanceReviewOperator(task_id="review", incident_id="INC-9")
    with pytest.raises(IncidentIdError, match="incident id 'INC-9' is malformed"):
        bad.execute({})
    assert _reviews(divergent_psp, closed_incident) == []
