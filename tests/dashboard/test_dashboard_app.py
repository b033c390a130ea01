"""The dashboard's FastAPI app through TestClient, on the real database; and the plugin
that mounts it in Airflow's API server."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def client(dashboard_db):
    from fastapi.testclient import TestClient

    from airflow_recon_provider.plugins.dashboard_app import create_app

    with TestClient(create_app(require_login=False)) as client:
        yield client


def test_the_page_lists_every_psp_with_its_incident(client, dashboard_db):
    page = client.get("/", params={"cycles": 3})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<h1>Reconciliação Financeira</h1>" in html
    assert re.findall(r'data-testid="psp-row" data-psp="(\w+)"', html) == ["stripe", "adyen", "pagseguro"]
    stripe_row = html[html.index('data-psp="stripe"') : html.index('data-psp="adyen"')]
    assert "ALERT" in stripe_row and "R$ 164.740,52" in stripe_row and "paused" in stripe_row
    # the converted total says so, beside each currency's own figure
    assert "converted" in stripe_row and "EUR 9.629,10" in stripe_row and "R$ 104.197,55" in stripe_row
    stripe_detail = html[html.index('data-testid="psp-detail" data-psp="stripe"') :]
    assert "1 EUR = 6,2875 BRL" in stripe_detail
    assert dashboard_db.incident_id in stripe_row
    assert 'href="#remediate-stripe"' in stripe_row  # the pre-filled form below
    assert f'data-incident="{dashboard_db.incident_id}"' in html
    assert "finance.bia" in html  # the approver of the correction
    adyen_row = html[html.index('data-psp="adyen"') : html.index('data-psp="pagseguro"')]
    assert ">OK<" in adyen_row and "none" in adyen_row


def test_each_psp_has_a_pre_filled_remediation_form(client, dashboard_db):
    html = client.get("/").text
    forms = re.findall(r'<form class="remediate".*?</form>', html, flags=re.S)
    assert [re.search(r'data-psp="(\w+)"', f).group(1) for f in forms] == ["stripe", "adyen", "pagseguro"]
    stripe = forms[0]
    # Airflow's own REST API creates the run, as the logged-in user (relative to /recon/)
    assert 'data-api="../api/v2/dags/billing_gateway_remediation/dagRuns"' in stripe
    assert 'data-runs="../dags/billing_gateway_remediation/runs/"' in stripe
    start = dashboard_db.window_start.strftime("%Y-%m-%dT%H:%M")
    end = dashboard_db.window_end.strftime("%Y-%m-%dT%H:%M")
    assert _inputs(stripe) == {
        "window_start": start,  # datetime-local, UTC (the label says so)
        "window_end": end,
        "incident_id": dashboard_db.incident_id,  # the open incident
        "reason": None,
        "dry_run": None,
    }
    assert re.search(r'<input type="checkbox" name="dry_run" checked>', stripe)  # dry run unless unticked
    assert _inputs(forms[1])["incident_id"] == ""  # adyen: no open incident


def _inputs(form: str) -> dict[str, str | None]:
    """name -> value attribute of each input of a form."""
    found = {}
    for tag in re.findall(r"<input\b[^>]*>", form, flags=re.S):
        value = re.search(r'\bvalue="([^"]*)"', tag)
        found[re.search(r'\bname="(\w+)"', tag).group(1)] = value.group(1) if value else None
    return found


def test_the_json_has_the_same_data(client, dashboard_db):
    body = client.get("/api/psps").json()
    stripe = body["psps"][0]
    assert stripe["psp"] == "stripe" and stripe["summary"]["divergent_count"] == 19
    assert stripe["incident"]["incident_id"] == dashboard_db.incident_id
    assert stripe["control"]["state"] == "paused"
    assert stripe["corrections"][0]["approved_by"] == "finance.bia"


def test_bad_parameters_are_400_with_a_reason(client):
    answer = client.get("/api/psps", params={"cycles": "many"})
    assert answer.status_code == 400 and "cycles" in answer.json()["error"]
    page = client.get("/", params={"end": "yesterday"})
    assert page.status_code == 400 and "dashboard-error" in page.text


def test_the_icon_needs_no_data(client):
    icon = client.get("/static/icon.svg")
    assert icon.status_code == 200 and icon.text.startswith("<svg")


def test_the_plugin_is_registered_through_the_entry_point():
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="airflow.plugins") if e.name == "reconciliation_dashboard"]
    plugin = entry.load()
    assert plugin.name == "reconciliation_dashboard"
    (app,) = plugin.fastapi_apps
    assert app["url_prefix"] == "/recon" and app["name"] == "Reconciliação Financeira"
    (view,) = plugin.external_views
    assert view["href"] == "recon/" and view["destination"] == "nav" and view["url_route"]
