"""Comunicação 3 on the dashboard: the incident page's form records the PSP's ticket number
(``POST /incidents/{id}/psp-ticket``, JSON on ``/api/...``) through FastAPI's TestClient with
Airflow's SimpleAuthManager and JWTs: a reader may not write (403), an editor of the
remediation DAG may; bad numbers are refused with the reason and nothing is recorded; a
second number replaces the first with both on the timeline; the page, the next update and
the closing report show it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def auth_manager(airflow_db, monkeypatch):
    from airflow.api_fastapi.app import init_auth_manager, purge_cached_app

    secret = "recon-dashboard-test-secret-" + "0123456789abcdef" * 4  # 64+ bytes for HS512
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", secret)
    monkeypatch.setenv(
        "AIRFLOW__CORE__AUTH_MANAGER",
        "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
    )
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    purge_cached_app()
    yield init_auth_manager()
    purge_cached_app()


@pytest.fixture
def client(auth_manager, dashboard_db):
    from fastapi.testclient import TestClient

    from airflow_recon_provider.plugins.dashboard_app import create_app

    with TestClient(create_app(require_login=True), follow_redirects=False) as client:
        yield client


def login(client, auth_manager, role: str | None, name: str) -> None:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    client.cookies.set("_token", auth_manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role)))


def ticket_events(db, incident_id: str) -> list[tuple]:
    return db.execute(
        "SELECT outcome, actor, details->>'psp_ticket', details->>'replaces' FROM recon.incident_events"
        " WHERE incident_id = %s AND step = 'incident.psp_ticket' ORDER BY id",
        (incident_id,),
    ).fetchall()


def stored_ticket(db, incident_id: str) -> str | None:
    (ticket,) = db.execute(
        "SELECT psp_ticket FROM recon.incidents WHERE incident_id = %s", (incident_id,)
    ).fetchone()
    return ticket


def test_an_editor_records_the_number_and_a_second_replaces_it(client, auth_manager, dashboard_db, db):
    incident_id = dashboard_db.incident_id
    login(client, auth_manager, "user", "oncall.ana")  # may edit DAGs

    page = client.get(f"/incidents/{incident_id}")
    assert page.status_code == 200 and 'data-testid="psp-ticket-form"' in page.text
    assert f'action="{incident_id}/psp-ticket"' in page.text and "Registrar ticket do PSP" in page.text

    answer = client.post(f"/incidents/{incident_id}/psp-ticket", data={"psp_ticket": "  STRIPE-8812 "})
    assert answer.status_code == 303 and answer.headers["location"] == f"../{incident_id}#psp-ticket"
    assert stored_ticket(db, incident_id) == "STRIPE-8812"
    page = client.get(f"/incidents/{incident_id}")
    assert "<code>STRIPE-8812</code>" in page.text and "Substituir pelo número" in page.text
    assert client.get(f"/api/incidents/{incident_id}").json()["psp_ticket"] == "STRIPE-8812"

    answer = client.post(f"/api/incidents/{incident_id}/psp-ticket", json={"psp_ticket": "STRIPE-8813"})
    assert answer.status_code == 200
    assert answer.json() == {
        "incident_id": incident_id,
        "psp_ticket": "STRIPE-8813",
        "replaces": "STRIPE-8812",
        "recorded_by": "oncall.ana",
    }
    assert stored_ticket(db, incident_id) == "STRIPE-8813"
    assert ticket_events(db, incident_id) == [
        ("Ticket do PSP STRIPE-8812", "oncall.ana", "STRIPE-8812", None),
        ("Ticket do PSP STRIPE-8813 (substitui STRIPE-8812)", "oncall.ana", "STRIPE-8813", "STRIPE-8812"),
    ]
    # both on the page's timeline, the latest as the incident's number
    page = client.get(f"/incidents/{incident_id}").text
    assert "Ticket do PSP STRIPE-8812" in page and "Ticket do PSP STRIPE-8813 (substitui STRIPE-8812)" in page


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("", "está vazio"),
        ("pendente", "não é um número de ticket"),
        ("STRIPE-1<script>", "não é um número de ticket"),
        ("A" * 65 + "1", "no máximo 64 caracteres"),
        ("STRIPE-1\nSTRIPE-2", "uma só linha"),
    ],
    ids=["empty", "no-digit", "markup", "too-long", "two-lines"],
)
def test_bad_numbers_are_refused_with_the_reason_and_nothing_recorded(
    client, auth_manager, dashboard_db, db, number, reason
):
    incident_id = dashboard_db.incident_id
    login(client, auth_manager, "user", "oncall.ana")
    before = db.execute("SELECT count(*) FROM recon.incident_events").fetchone()

    page = client.post(f"/incidents/{incident_id}/psp-ticket", data={"psp_ticket": number})
    assert page.status_code == 400
    assert "número do ticket do PSP recusado, nada foi registrado" in page.text and reason in page.text
    answer = client.post(f"/api/incidents/{incident_id}/psp-ticket", json={"psp_ticket": number})
    assert answer.status_code == 400 and reason in answer.json()["error"]

    assert stored_ticket(db, incident_id) is None
    assert db.execute("SELECT count(*) FROM recon.incident_events").fetchone() == before


def test_writing_needs_edit_permission_on_the_remediation_dag(client, auth_manager, dashboard_db, db):
    incident_id = dashboard_db.incident_id
    client.cookies.clear()
    assert (
        client.post(f"/api/incidents/{incident_id}/psp-ticket", json={"psp_ticket": "T-1"}).status_code == 401
    )
    login(client, auth_manager, "viewer", "finance.bia")  # reads the dashboard, may not edit
    assert client.get(f"/incidents/{incident_id}").status_code == 200
    page = client.post(f"/incidents/{incident_id}/psp-ticket", data={"psp_ticket": "T-1"})
    assert page.status_code == 403
    answer = client.post(f"/api/incidents/{incident_id}/psp-ticket", json={"psp_ticket": "T-1"})
    assert answer.status_code == 403 and "may not edit" in answer.json()["detail"]
    assert stored_ticket(db, incident_id) is None and ticket_events(db, incident_id) == []


def test_unknown_and_closed_incidents_are_refused(client, auth_manager, dashboard_db, db):
    from airflow_recon_provider.hooks.incidents import IncidentHook

    login(client, auth_manager, "user", "oncall.ana")
    answer = client.post("/api/incidents/INCIDENT-999999/psp-ticket", json={"psp_ticket": "T-1"})
    assert answer.status_code == 404 and "não existe" in answer.json()["error"]

    hook = IncidentHook()
    incident_id = dashboard_db.incident_id
    for state in ("recovered", "closed"):
        hook.transition(incident_id, state, actor="oncall.ana")
    assert 'data-testid="psp-ticket-form"' not in client.get(f"/incidents/{incident_id}").text
    answer = client.post(f"/api/incidents/{incident_id}/psp-ticket", json={"psp_ticket": "T-1"})
    assert answer.status_code == 409 and "está encerrado" in answer.json()["error"]
    assert stored_ticket(db, incident_id) is None


def test_the_next_update_and_the_closing_report_show_the_number(client, auth_manager, dashboard_db):
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation.incidents import (
        ClosingReport,
        IncidentUpdate,
        render_closing_report_markdown,
        render_update,
    )

    incident_id = dashboard_db.incident_id
    hook = IncidentHook()
    # before a number: the closing report says none (no ticket CSV was sent either)
    draft = ClosingReport(
        incident=hook.get(incident_id),
        events=tuple(hook.timeline(incident_id)),
        corrections=(),
        final_figures=None,
        generated_at=datetime.now(UTC),
    )
    assert "| Ticket do PSP | nenhum |" in render_closing_report_markdown(draft)

    login(client, auth_manager, "user", "oncall.ana")
    assert (
        client.post(f"/incidents/{incident_id}/psp-ticket", data={"psp_ticket": "STRIPE-8812"}).status_code
        == 303
    )
    incident = hook.get(incident_id)
    events = tuple(hook.timeline(incident_id))
    update = render_update(
        IncidentUpdate(
            incident=incident, as_of=datetime.now(UTC), figures=incident.figures, steps=events[-1:]
        )
    )
    assert "Ticket do PSP: STRIPE-8812" in " ".join(update.text.split())
    assert "Ticket do PSP registrado" in update.text  # the step itself, among the steps executed
    report = ClosingReport(
        incident=incident, events=events, corrections=(), final_figures=None, generated_at=datetime.now(UTC)
    )
    assert "| Ticket do PSP | STRIPE-8812 |" in render_closing_report_markdown(report)


def test_a_refusal_in_english(client, auth_manager, dashboard_db, db, monkeypatch):
    """``[recon] language = en``: the refused number's page and JSON say why in English."""
    monkeypatch.setenv("AIRFLOW__RECON__LANGUAGE", "en")
    incident_id = dashboard_db.incident_id
    login(client, auth_manager, "user", "oncall.ana")
    page = client.post(f"/incidents/{incident_id}/psp-ticket", data={"psp_ticket": "pendente"})
    assert page.status_code == 400 and '<html lang="en">' in page.text
    assert "PSP ticket number refused, nothing was recorded: PSP ticket number" in page.text
    assert "is not a ticket number: use letters and digits (at least one digit)" in page.text
    answer = client.post(f"/api/incidents/{incident_id}/psp-ticket", json=["STRIPE-1"])
    assert answer.status_code == 400 and answer.json()["error"] == 'send a JSON object {"psp_ticket": "..."}'
    assert stored_ticket(db, incident_id) is None
