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
    # the state in words, one reason each (never a raw "alert ...: amount")
    assert "alerta: divergência de R$ 164.740,52 acima do limite de R$ 5.000,00" in stripe_row
    assert "alerta: reconciliação atrasada há 3 ciclos (limite 2)" in stripe_row
    assert "pausada" in stripe_row and "alert billing_gateway" not in stripe_row
    # the converted total says so, beside each currency's own figure
    assert "convertido" in stripe_row and "EUR 9.629,10" in stripe_row and "R$ 104.197,55" in stripe_row
    stripe_detail = html[html.index('data-testid="psp-detail" data-psp="stripe"') :]
    assert "1 EUR = 6,2875 BRL" in stripe_detail
    assert dashboard_db.incident_id in stripe_row
    assert 'href="#remediate-stripe"' in stripe_row  # the pre-filled form below
    assert f'data-incident="{dashboard_db.incident_id}"' in html
    assert "finance.bia" in html  # the approver of the correction
    adyen_row = html[html.index('data-psp="adyen"') : html.index('data-psp="pagseguro"')]
    assert "dentro dos limites" in adyen_row and "nenhum" in adyen_row
    # divergence by kind in words, the kind's code kept beside it
    kind_row = re.search(r'<tr data-kind="status_mismatch"><td>([^\n]*)</td>', stripe_detail)
    assert kind_row, stripe_detail[:3000]
    assert kind_row.group(1).startswith("status divergente <span")
    assert "<code>status_mismatch</code>" in kind_row.group(1)
    assert '<td data-kind="status_mismatch">status divergente' in stripe_detail  # recent corrections
    # the way to Airflow's Required Actions, under the name the Airflow UI gives it in Portuguese
    assert 'href="../required_actions" target="_top">Ações Necessárias (aprovações do financeiro)</a>' in html


def test_failed_cycles_are_shown_beside_the_lag(client, db, dashboard_db):
    """A window whose cycles failed never reads as a bare "lag 0": the lag cell and the
    badges count the failed cycles, even when a later cycle succeeded."""
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.reconciliation import ReconConfig, Window

    gateway = BillingGatewayHook(config=ReconConfig.load())
    start = dashboard_db.window_start
    cycles = Window(start, dashboard_db.window_end).cycles()
    for cycle in cycles[:2]:  # adyen: two failed cycles, then its latest cycle succeeds
        gateway.record_cycle("adyen", cycle.window, "failed")
    gateway.record_cycle("adyen", cycles[-1].window, "success")
    html = client.get("/", params={"cycles": 3}).text
    adyen_row = html[html.index('data-psp="adyen"') : html.index('data-psp="pagseguro"')]
    lag = re.search(r'data-testid="psp-lag">([^<]*)<', adyen_row).group(1)
    assert lag == "em dia (0 ciclos) · 2 ciclos com falha na janela"
    assert "2 ciclos de reconciliação falharam na janela" in adyen_row
    assert "dentro dos limites" not in adyen_row
    body = client.get("/api/psps", params={"cycles": 3}).json()
    assert "psps" in body, body
    assert body["psps"][1]["failed_cycles"] == 2


def test_corrections_show_their_total_and_every_one_is_reachable(client, db, dashboard_db):
    """12 corrections: the PSP's section shows the latest 10 as "10 de 12" with a link to
    the page that lists them all, a page at a time."""
    db.execute(
        """INSERT INTO recon.corrections (correction_key, incident_id, psp, transaction_id,
               provider_reference, transaction_type, kind, amount_minor, currency, before, after,
               requested_by, approved_by, run_id)
           SELECT 'k2', %s, 'stripe', t.id, i.provider_reference, t.transaction_type,
                  'status_mismatch', t.amount_minor, t.currency, '{"status": "authorized"}',
                  '{"status": "captured"}', 'oncall.ana', 'finance.bia', 'manual__2'
             FROM payment_transactions t JOIN payment_intents i ON i.id = t.intent_id
            WHERE i.provider = 'stripe' ORDER BY t.id LIMIT 11""",
        (dashboard_db.incident_id,),
    )
    html = client.get("/").text
    stripe = html[html.index('data-testid="psp-detail" data-psp="stripe"') : html.index('data-psp="adyen" ')]
    assert "<strong>10 de 12</strong> correções" in stripe
    assert 'href="corrections/stripe" data-testid="corrections-all">ver todas as 12</a>' in stripe
    page = client.get("/corrections/stripe")
    assert page.status_code == 200 and "<strong>1\N{EN DASH}12 de 12</strong> correções" in page.text
    assert page.text.count('<td data-kind="status_mismatch">status divergente') == 12
    assert "página 1 de 1" in page.text and page.text.count('data-testid="correction-row"') == 12
    past_the_end = client.get("/corrections/stripe", params={"page": 2}).text
    assert past_the_end.count('data-testid="correction-row"') == 0
    unknown = client.get("/corrections/nope")
    assert unknown.status_code == 404 and "não está na configuração" in unknown.text


def test_cycles_out_of_range_is_explained(client):
    page = client.get("/", params={"cycles": 720})
    assert page.status_code == 400 and "Parâmetro fora do intervalo" in page.text
    says = "cycles=720 está fora do intervalo: o painel mostra de 1 a 168 ciclos horários (7 dias)"
    assert says in page.text
    assert "não consegue ler os dados" not in page.text


def test_recent_runs_show_the_scope_note_and_refusals(dashboard_db):
    from datetime import UTC, datetime

    from fastapi.testclient import TestClient

    from airflow_recon_provider.plugins.dashboard_app import create_app
    from airflow_recon_provider.plugins.dashboard_runs import RecentRun

    refused = RecentRun(
        dag_id="billing_gateway_remediation",
        run_id="manual__2026-12-07T01:00:00+00:00",
        state="failed",
        run_after=datetime(2026, 12, 7, 1, tzinfo=UTC),
        triggered_by="oncall",
        conf={"psp": "stripe", "window_start": "2026-12-07T01:00Z", "window_end": "2026-12-06T22:00Z"},
        note=(
            "Recusado em Validar Escopo: o fim da janela (2026-12-06 22:00 UTC) é anterior ou igual ao início"
        ),
    )
    with TestClient(create_app(require_login=False, recent_runs=lambda: [refused])) as client:
        html = client.get("/").text
    section = html[html.index('data-testid="recent-runs"') : html.index('data-testid="psp-detail"')]
    assert 'class="refused"' in section and ">recusada<" in section
    assert "o fim da janela (2026-12-06 22:00 UTC) é anterior ou igual ao início" in section
    assert "2026-12-07T01:00Z → 2026-12-06T22:00Z" in section and "oncall" in section

    def broken() -> list[RecentRun]:
        raise RuntimeError("metadata database unreachable")

    with TestClient(create_app(require_login=False, recent_runs=broken)) as client:
        page = client.get("/")
    assert page.status_code == 200  # the rest of the page is still there
    assert "não foi possível ler as execuções recentes do Airflow: metadata database unreachable" in page.text


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
        "window_start": start,  # datetime-local, in the zone the form's select shows (UTC first)
        "window_end": end,
        "incident_id": dashboard_db.incident_id,  # the open incident
        "reason": None,
        "dry_run": None,
    }
    assert re.search(r'<input type="checkbox" name="dry_run" checked>', stripe)  # dry run unless unticked
    # the zone of the fields is stated and selectable; the window is echoed in both zones
    assert '<option value="UTC" selected>UTC</option>' in stripe
    assert '<option value="America/Sao_Paulo">' in stripe and 'data-testid="remediate-echo"' in stripe
    assert 'data-max-hours="744"' in stripe  # 31 days: checked before anything is posted
    assert "formato INCIDENT-&lt;número&gt;, ex. INCIDENT-472" in stripe
    # a real run asks first, saying what it will do
    assert 'data-testid="remediate-confirm" hidden' in stripe
    assert "pausa a reconciliação automática de Stripe" in stripe and "avisa o financeiro" in stripe
    adyen = forms[1]  # within thresholds: the confirmation says so
    assert 'data-within-thresholds="true"' in adyen and "que está dentro dos limites agora" in adyen
    assert "abre um incidente para o PSP" in adyen
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


def test_english_is_selectable(dashboard_db, monkeypatch):
    """``[recon] language = en``: the same page in English (what people read is pt-BR by default)."""
    from fastapi.testclient import TestClient

    from airflow_recon_provider.plugins.dashboard_app import create_app

    monkeypatch.setenv("AIRFLOW__RECON__LANGUAGE", "en")
    with TestClient(create_app(require_login=False, recent_runs=list)) as client:
        html = client.get("/", params={"cycles": 3}).text
        out_of_range = client.get("/", params={"cycles": 720}).text
    assert '<html lang="en">' in html and "Recent runs" in html and "No run yet." in html
    # the amounts follow the language too (English number format)
    assert "alert: divergence of BRL 164,740.52 above the alert threshold of BRL 5,000.00" in html
    assert "Start remediation" in html and "Execuções recentes" not in html
    assert '<tr data-kind="status_mismatch"><td>different status <span' in html
    assert '<td data-kind="status_mismatch">different status' in html
    assert "Required actions (finance approvals)</a>" in html
    assert "cycles=720 is out of range: the dashboard shows 1 to 168 hourly cycles (7 days)" in out_of_range


def test_a_person_switches_the_pages_to_english_and_back(dashboard_db, monkeypatch):
    """``?lang=en`` on any page switches what that person reads; a cookie keeps the choice on
    the pages after (the incident pages too); ``?lang=pt-BR`` switches back; an unknown choice
    shows the configured language (pt-BR) and forgets the earlier one."""
    from fastapi.testclient import TestClient

    from airflow_recon_provider.plugins.dashboard_app import create_app

    monkeypatch.delenv("AIRFLOW__RECON__LANGUAGE", raising=False)
    with TestClient(create_app(require_login=False, recent_runs=list)) as client:
        first = client.get("/", params={"cycles": 3})
        assert '<html lang="pt-BR">' in first.text and "Execuções recentes" in first.text
        assert "Incidentes (abertos e encerrados)</a>" in first.text
        switch = first.text.split('data-testid="language-switch">', 1)[1].split("</span>", 1)[0]
        assert '<strong aria-current="true" lang="pt-BR">Português</strong>' in switch
        assert '<a href="?lang=en" lang="en" data-lang="en">English</a>' in switch

        english = client.get("/", params={"lang": "en"})
        assert '<html lang="en">' in english.text and "Recent runs" in english.text
        assert "Incidents (open and closed)</a>" in english.text and "Incidentes (abertos" not in english.text
        assert "recon_lang=en" in english.headers["set-cookie"]
        # the cookie keeps it: the incident list and an incident's page in English
        incidents = client.get("/incidents")
        assert '<html lang="en">' in incidents.text and "Incidents" in incidents.text
        page = client.get(f"/incidents/{dashboard_db.incident_id}")
        assert '<html lang="en">' in page.text and "All incidents" in page.text and "Opened at" in page.text

        back = client.get("/incidents", params={"lang": "pt-BR"})
        assert '<html lang="pt-BR">' in back.text and "recon_lang=pt_BR" in back.headers["set-cookie"]
        assert '<html lang="pt-BR">' in client.get("/", params={"cycles": 3}).text

        unknown = client.get("/", params={"lang": "klingon"})
        assert '<html lang="pt-BR">' in unknown.text and "Max-Age=0" in unknown.headers["set-cookie"]
