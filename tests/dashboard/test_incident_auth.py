"""Every incident and evidence route asks Airflow's auth manager, like the dashboard's page:
no login -> the login page (HTML) or 401 (JSON); logged in without read permission on the
remediation DAG -> 403; a reader -> the data. Airflow's own SimpleAuthManager and JWTs, the
UI's ``_token`` cookie or an ``Authorization: Bearer`` header."""

from __future__ import annotations

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
def app_client(auth_manager, dashboard_db):
    from fastapi.testclient import TestClient

    from airflow_recon_provider.plugins.dashboard_app import create_app

    with TestClient(create_app(require_login=True), follow_redirects=False) as client:
        yield client


def _token(auth_manager, role: str | None) -> str:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return auth_manager.generate_jwt(SimpleAuthManagerUser(username=f"user-{role}", role=role))


def _routes(incident_id: str, artifact_id: int) -> tuple[list[str], list[str]]:
    run = "runs/billing_gateway_remediation/manual__2026-11-20T12%3A30%3A00%2B00%3A00/artifacts"
    pages = [
        "/incidents",
        f"/incidents/{incident_id}",
        f"/incidents/{incident_id}/closing-report",
        f"/artifacts/{artifact_id}",
        f"/{run}",
    ]
    apis = ["/api/incidents", f"/api/incidents/{incident_id}", f"/api/{run}"]
    return pages, apis


def test_without_login_pages_go_to_the_login_and_json_is_401(app_client, closed_incident):
    pages, apis = _routes(closed_incident.incident_id, closed_incident.artifacts["snapshot"].id)
    for path in pages:
        answer = app_client.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/auth/login?next="), path
        assert "FIN-88" not in answer.text and "provider_reference" not in answer.text
    for path in apis:
        answer = app_client.get(path)
        assert answer.status_code == 401 and answer.json() == {"detail": "Not authenticated"}, path
    # checked before anything else: a malformed id without login says nothing about ids
    assert app_client.get("/api/incidents/not-an-id").status_code == 401
    assert app_client.get("/artifacts/abc").status_code == 303


def test_a_user_without_read_permission_on_the_dag_gets_403(app_client, auth_manager, closed_incident):
    pages, apis = _routes(closed_incident.incident_id, closed_incident.artifacts["snapshot"].id)
    app_client.cookies.set("_token", _token(auth_manager, None))  # no role: no DAG is readable
    for path in pages:
        answer = app_client.get(path)
        assert answer.status_code == 403, path
        assert "Você não tem permissão de leitura na DAG billing_gateway_remediation" in answer.text
        assert "FIN-88" not in answer.text
    app_client.cookies.clear()
    for path in apis:
        answer = app_client.get(path, headers={"Authorization": f"Bearer {_token(auth_manager, None)}"})
        assert answer.status_code == 403 and "may not read" in answer.json()["detail"], path


def test_a_reader_gets_the_data(app_client, auth_manager, closed_incident):
    from dashboard_support import SNAPSHOT_CSV

    pages, apis = _routes(closed_incident.incident_id, closed_incident.artifacts["snapshot"].id)
    app_client.cookies.set("_token", _token(auth_manager, "viewer"))  # as the UI's login leaves it
    for path in pages + apis:
        assert app_client.get(path).status_code == 200, path
    download = app_client.get(f"/artifacts/{closed_incident.artifacts['snapshot'].id}")
    assert download.content == SNAPSHOT_CSV
    app_client.cookies.clear()
    bearer = {"Authorization": f"Bearer {_token(auth_manager, 'viewer')}"}
    assert app_client.get("/api/incidents", headers=bearer).json()["total"] == 2
