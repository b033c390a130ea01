"""The dashboard's side of finance's reports, through FastAPI's TestClient: the *Reportar
divergência* form on the main page, the server's check it calls before triggering the DAG,
and the incident page showing the report and its dry run's findings."""

from __future__ import annotations

import re

import pytest
from remediation_dag_support import WINDOW_END, WINDOW_START

CHECK = "/api/finance-report/check"
REPORT = {
    "psp": "stripe",
    "window_start": "2026-11-20T08:00:00-03:00",
    "window_end": WINDOW_END,
    "finance_ticket": "FIN-88",
    "description": '<img src=x onerror=alert(1)> ledger R$ 2.000 acima & "extrato"',
}


@pytest.fixture
def client(scenario):
    from fastapi.testclient import TestClient

    from airflow_recon_provider.plugins.dashboard_app import create_app

    with TestClient(create_app(require_login=False)) as client:
        yield client


def test_the_main_page_has_the_report_form(client):
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert 'data-testid="finance-report-form"' in html and "Reportar divergência" in html
    form = html[html.index('data-testid="finance-report-form"') :]
    assert 'data-api="../api/v2/dags/billing_gateway_finance_report/dagRuns"' in form
    assert 'data-check="api/finance-report/check"' in form
    # the PSP pick list, the window in UTC echoed in São Paulo time, the server's rules
    assert '<option value="stripe">Stripe (stripe)</option>' in form
    assert "Início da janela (UTC)" in form and "Fim da janela (UTC, exclusivo)" in form
    assert 'data-local-tz="America/Sao_Paulo"' in form and 'data-max-window-hours="744"' in form
    assert 'data-ticket-pattern="^FIN-[1-9][0-9]{0,8}$"' in form and 'maxlength="2000"' in form
    assert 'data-error-for="window_end"' in form and 'data-testid="finance-report-window-echo"' in form


def test_the_check_gives_the_conf_in_utc(client):
    answer = client.post(CHECK, json=REPORT)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "ok": True,
        "conf": {**REPORT, "window_start": "2026-11-20T11:00:00Z", "window_end": "2026-11-20T14:00:00Z"},
    }


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"psp": "paypal"}, "psp", "PSP 'paypal' desconhecido"),
        ({"window_end": "2026-11-20T10:00:00Z"}, "window_end", "precisa ser depois do início"),
        ({"window_end": "2027-01-30T00:00:00Z"}, "window_end", "maior que o máximo de 31 dias"),
        ({"finance_ticket": "FIN-88' OR 1=1 --"}, "finance_ticket", "o formato é FIN-<número>"),
        ({"description": "a\x07b"}, "description", "caracteres de controle"),
    ],
)
def test_the_check_names_the_bad_field_in_portuguese(client, overrides, field, words):
    answer = client.post(CHECK, json={**REPORT, **overrides})
    assert answer.status_code == 400
    body = answer.json()
    assert body["ok"] is False and words in body["errors"][field], body


def test_the_check_refuses_what_is_not_a_report(client):
    assert client.post(CHECK, content=b"{not json", headers={"Content-Type": "application/json"}).json() == {
        "ok": False,
        "errors": {"form": "O formulário não enviou JSON válido."},
    }
    assert client.post(CHECK, json=["x"]).status_code == 400
    assert client.post(CHECK, content=b"x" * 20000).status_code == 413


@pytest.mark.timeout(300)
def test_the_incident_page_shows_the_report_and_the_dry_runs_findings(
    client, report_dag, remediation_dag, finance_conns, workdir, db, monkeypatch
):
    from airflow_recon_provider.devtools.demo_airflow import drive_dag_run

    conf = client.post(CHECK, json=REPORT).json()["conf"]  # what the form sends to Airflow
    dag_run = report_dag.test(run_conf=conf)
    assert dag_run.state == "success"
    (incident_id,) = db.execute("SELECT incident_id FROM recon.incidents").fetchone()

    before = client.get(f"/incidents/{incident_id}").text
    assert 'data-testid="finance-report"' in before and 'data-testid="finance-findings-pending"' in before
    assert '<code data-testid="finance-report-ticket">FIN-88</code>' in before
    assert "&lt;img src=x onerror=alert(1)&gt;" in before and "<img src=x" not in before
    assert '<dd data-testid="finance-report-by">dag_test</dd>' in before
    assert '<dd data-testid="finance-report-slack">avisado</dd>' in before
    # no PagerDuty connection in this test: the page says on-call was not told there, and why
    assert re.search(r'data-testid="finance-report-pagerduty">não avisado \(.*pagerduty_recon', before)
    assert "Relato do financeiro" in before and "Plantão avisado no Slack" in before

    dry_id = f"finance_report__FIN-88__{dag_run.run_id}"
    assert drive_dag_run(remediation_dag, dry_id) == "success"
    page = client.get(f"/incidents/{incident_id}").text
    assert 'data-testid="finance-findings"' in page and "finance-findings-pending" not in page
    by_currency = page[page.index('data-testid="finance-findings-by-currency"') :]
    row = re.search(r'<tr data-currency="BRL" data-kind="status_mismatch">(.*?)</tr>', by_currency, re.S)
    assert row and "R$" in row.group(1), by_currency[:2000]
    sides = page[page.index('data-testid="finance-findings-sides"') :]
    assert re.search(r'data-status="authorized" data-currency="BRL">.*?difere', sides, re.S)
    # the ledger beside the gateway per status and currency, each amount in its currency
    ledger = page[page.index('data-testid="finance-findings-ledger"') :]
    ledger = ledger[: ledger.index("</table>")]
    row = re.search(r'<tr data-status="captured" data-currency="BRL">(.*?)</tr>', ledger, re.S)
    assert row and row.group(1).count("R$") == 2, ledger[:2000]
    currencies = set(re.findall(r'<tr data-status="[^"]+" data-currency="([^"]*)">', ledger))
    assert currencies and all(re.fullmatch("[A-Z]{3}", c) for c in currencies), currencies
    assert "Achados da simulação (relato do financeiro)" in page

    data = client.get(f"/api/incidents/{incident_id}").json()
    (report,) = data["finance_reports"]
    assert report["finance_ticket"] == "FIN-88" and report["dry_run_run_id"] == dry_id
    assert report["description"] == REPORT["description"] and report["slack"] == "sent"
    assert report["findings"]["divergence"]["by_currency"]["BRL"]["by_kind"]
    assert data["finance_ticket"] == "FIN-88"

    # the same page with [recon] language = en: the report, its findings and their tables in English
    monkeypatch.setenv("AIRFLOW__RECON__LANGUAGE", "en")
    page = client.get(f"/incidents/{incident_id}").text
    section = page[page.index('data-testid="finance-reports"') : page.index('data-testid="communication"')]
    assert "<h2>Detection — finance's reports</h2>" in section and "<h3>Dry-run findings</h3>" in section
    assert '<dd data-testid="finance-report-slack">told</dd>' in section
    assert re.search(r'data-testid="finance-report-pagerduty">not told \(.*pagerduty_recon', section)
    assert (
        "Divergence by kind and currency" in section
        and "Gateway \N{MULTIPLICATION SIGN} PSP statement, per status and currency" in section
    )
    row = re.search(r'<tr data-currency="BRL" data-kind="status_mismatch">(.*?)</tr>', section, re.S)
    assert row and "different status" in row.group(1) and "<code>status_mismatch</code>" in row.group(1)
    assert re.search(r'data-status="authorized" data-currency="BRL">.*?differs', section, re.S)
    for portuguese in ("Relato", "Achados", "avisado", "difere", "Moeda"):
        assert portuguese not in section


def test_an_incident_without_a_report_has_no_report_section(client, db):
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation.window import Window

    incident_id = IncidentHook().open_incident(
        "stripe", window=Window.parse(WINDOW_START, WINDOW_END), reason="alert", actor="watch"
    )
    page = client.get(f"/incidents/{incident_id}")
    assert page.status_code == 200 and 'data-testid="finance-reports"' not in page.text
    assert client.get(f"/api/incidents/{incident_id}").json()["finance_reports"] == []


def test_the_form_and_the_check_in_english(client, monkeypatch):
    """``[recon] language = en``: the form's labels, its script's messages and the server's check."""
    monkeypatch.setenv("AIRFLOW__RECON__LANGUAGE", "en")
    html = client.get("/").text
    form = html[html.index('data-testid="finance-report"') :]
    assert "<h2>Report a divergence</h2>" in form and "Window start (UTC)" in form
    assert "Window end (UTC, exclusive)" in form and "— choose the PSP —" in form
    assert '"Give finance\\u0027s ticket, for example FIN-88."' in form  # the script's own messages
    assert "Reportar" not in form and "Informe" not in form and "conferindo" not in form
    answer = client.post(CHECK, json={**REPORT, "psp": "paypal", "window_end": "2026-11-20T10:00:00Z"})
    assert answer.status_code == 400
    assert answer.json()["errors"] == {
        "psp": "PSP 'paypal' is unknown; configured PSPs: stripe, adyen.",
        "window_end": "The window end (2026-11-20 10:00 UTC) must be after the start (2026-11-20 11:00 UTC).",
    }
    bad = client.post(CHECK, content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.json() == {"ok": False, "errors": {"form": "The form did not send valid JSON."}}
