"""Incidents, open and closed, on the dashboard (``/recon/incidents``) against the real
PostgreSQL: the list with its pagination and filters, one incident with its timeline under
the runbook's headings, corrections per currency, tickets, artifacts and closing report; the
JSON twins; bad and unknown ids; hostile text always escaped."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from dashboard_support import DRY_RUN_CSV, HOSTILE

pytestmark = pytest.mark.integration


@pytest.fixture
def client(dashboard_db):
    from fastapi.testclient import TestClient

    from airflow_recon_provider.plugins.dashboard_app import create_app

    with TestClient(create_app(require_login=False)) as client:
        yield client


def _rows(html: str) -> list[str]:
    return re.findall(r'data-testid="incident-row" data-incident="([^"]+)"', html)


def _row(html: str, incident_id: str) -> str:
    start = html.index(f'data-incident="{incident_id}"')
    end = html.find('data-testid="incident-row"', start + 1)
    return html[start : end if end > 0 else None]


def _no_raw_hostile(html: str) -> None:
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html or "&lt;script&gt;" in html


def test_the_list_shows_open_and_closed_incidents_newest_first(client, dashboard_db, closed_incident):
    page = client.get("/incidents")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<html lang="pt-BR">' in html and "<h1>Incidentes</h1>" in html
    assert _rows(html) == [closed_incident.incident_id, dashboard_db.incident_id]
    assert "Incidentes <strong>1\N{EN DASH}2</strong> de <strong>2</strong>" in html

    closed = _row(html, closed_incident.incident_id)
    assert 'data-state="closed"' in closed and ">encerrado<" in closed
    assert closed.count(" UTC") >= 2  # opened and closed at
    assert "FIN-88&lt;b&gt;" in closed  # the finance ticket, escaped
    assert "ADY-7 &lt;script&gt;" in closed  # the PSP ticket, escaped
    assert re.search(r'<td class="num">3</td>', closed)  # three corrections

    stripe = _row(html, dashboard_db.incident_id)
    assert 'data-state="open"' in stripe and ">aberto<" in stripe
    # the figures as the dashboard shows them: the converted total and each currency's own
    assert "R$ 164.740,52" in stripe and "convertido para BRL" in stripe
    assert "EUR 9.629,10" in stripe and "R$ 104.197,55" in stripe
    assert "1 EUR = 6,2875 BRL" in stripe
    assert f'href="incidents/{dashboard_db.incident_id}"' in stripe
    _no_raw_hostile(html)


def test_the_main_page_links_the_incidents(client, dashboard_db):
    html = client.get("/").text
    assert 'href="incidents" data-testid="incidents-link"' in html
    assert f'href="incidents/{dashboard_db.incident_id}" data-testid="incident-page-link"' in html


def _insert_closed(db, n: int) -> None:
    """``n`` old closed incidents of pagseguro, the oldest last."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for k in range(n):
        db.execute(
            "INSERT INTO recon.incidents (incident_id, psp, state, opened_by, opened_at, closed_at, reason)"
            " VALUES (%s, 'pagseguro', 'closed', 'oncall.ana', %s, %s, 'old')",
            (f"INCIDENT-{9000 + k}", base - timedelta(days=k), base - timedelta(days=k) + timedelta(hours=5)),
        )


def test_pagination_says_where_the_page_stands(client, dashboard_db, closed_incident, db):
    _insert_closed(db, 23)  # 25 in all
    first = client.get("/incidents", params={"per_page": 10})
    assert first.status_code == 200
    assert "Incidentes <strong>1\N{EN DASH}10</strong> de <strong>25</strong>" in first.text
    assert "Página 1 de 3" in first.text
    assert _rows(first.text)[:3] == [closed_incident.incident_id, dashboard_db.incident_id, "INCIDENT-9000"]
    assert 'href="incidents?page=2&amp;per_page=10" rel="next"' in first.text

    last = client.get("/incidents", params={"per_page": 10, "page": 3})
    assert "Incidentes <strong>21\N{EN DASH}25</strong> de <strong>25</strong>" in last.text
    assert _rows(last.text) == [f"INCIDENT-{9000 + k}" for k in range(18, 23)]
    assert 'rel="prev"' in last.text and 'rel="next"' not in last.text

    body = client.get("/api/incidents", params={"per_page": 10, "page": 2}).json()
    assert (body["page"], body["pages"], body["total"], body["first"], body["last"]) == (2, 3, 25, 11, 20)
    assert [i["incident_id"] for i in body["incidents"]] == [f"INCIDENT-{9000 + k}" for k in range(8, 18)]

    past = client.get("/incidents", params={"per_page": 10, "page": 4})
    assert past.status_code == 404
    assert "A página 4 não existe: há 25 incidentes em 3 páginas." in past.text
    assert client.get("/api/incidents", params={"page": 4, "per_page": 10}).status_code == 404


def test_filters_by_state_and_psp(client, dashboard_db, closed_incident, db):
    _insert_closed(db, 3)
    closed = client.get("/api/incidents", params={"state": "closed"}).json()
    assert closed["total"] == 4
    assert dashboard_db.incident_id not in {i["incident_id"] for i in closed["incidents"]}
    open_ = client.get("/api/incidents", params={"state": "open"}).json()
    assert [i["incident_id"] for i in open_["incidents"]] == [dashboard_db.incident_id]
    assert open_["incidents"][0]["state_label"] == "aberto"
    adyen = client.get("/incidents", params={"psp": "adyen"})
    assert _rows(adyen.text) == [closed_incident.incident_id]
    nothing = client.get("/incidents", params={"psp": "nobody"})
    assert nothing.status_code == 200 and 'data-testid="no-incidents"' in nothing.text


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"page": "0"}, "Parâmetro page inválido: '0'. Use um número inteiro de 1 a"),
        ({"page": "abc"}, "Parâmetro page inválido: 'abc'"),
        ({"per_page": "101"}, "Parâmetro per_page inválido: '101'. Use um número inteiro de 1 a 100."),
        ({"state": "sleeping"}, "Parâmetro state inválido: 'sleeping'. Estados: open (aberto)"),
        ({"psp": "Robert'); DROP"}, "Parâmetro psp inválido"),
    ],
)
def test_bad_list_parameters_are_400_in_portuguese(client, dashboard_db, params, says):
    page = client.get("/incidents", params=params)
    assert page.status_code == 400 and 'data-testid="dashboard-error"' in page.text
    assert says.replace("'", "&#39;") in page.text
    answer = client.get("/api/incidents", params=params)
    assert answer.status_code == 400 and says in answer.json()["error"]


def test_an_incident_page_has_the_whole_story_under_the_runbooks_headings(client, closed_incident):
    iid = closed_incident.incident_id
    page = client.get(f"/incidents/{iid}")
    assert page.status_code == 200
    html = page.text
    assert f'<h1 data-testid="incident-id">{iid}</h1>' in html and ">encerrado<" in html
    headings = ("Detecção", "Comunicação", "Linha do tempo", "Correção de Dados", "Artefatos", "Encerramento")
    for heading in headings:
        assert f"<h2>{heading}</h2>" in html
    timeline = html[html.index('data-testid="timeline"') : html.index('data-testid="corrections-section"')]
    row = r'<tr data-step="([^"]+)">\s*<td class="num">[^<]+</td>\s*<td class="section">([^<]+)</td>'
    steps = re.findall(row + r"\s*<td>([^<]+)</td>", timeline)
    assert steps == [
        ("incident.opened", "Detecção", "Incidente aberto"),
        ("investigation.snapshot", "Investigação", "Snapshot do banco"),
        ("incident.psp_ticket", "Comunicação", "Ticket do PSP registrado"),
        ("incident.state", "Critérios de Recuperação", "Estado: aberto → recuperado"),
        ("incident.state", "Encerramento", "Estado: recuperado → encerrado"),
        ("incident.closing_report", "Encerramento", "Relatório de encerramento anexado"),
        ("mitigation.data_correction", "Correção de Dados", "Correção de Dados"),
    ]
    # the timeline's figures are compact: the rates are said once, under Detecção, not on every row
    assert 'data-testid="rates"' not in timeline
    assert 'data-testid="rates"' in html[: html.index('data-testid="timeline"')]
    # the artifact an event names is linked on the dashboard
    dry_run = closed_incident.artifacts["dry_run"]
    assert f'<a href="../artifacts/{dry_run.id}" data-testid="event-artifact">{dry_run.name}</a>' in timeline
    # the tickets
    assert '<dd data-testid="finance-ticket"><code>FIN-88&lt;b&gt;</code></dd>' in html
    assert "ADY-7 &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    # corrections with their currency, totals never added across currencies
    start = html.index('data-testid="corrections-section"')
    corrections = html[start : html.index('data-testid="artifacts-section"')]
    totals = '<strong data-currency="BRL">R$ 11,25</strong> · <strong data-currency="EUR">EUR 25,50</strong>'
    assert totals in corrections
    assert corrections.count("<strong>finance.bia</strong>") == 3
    assert "authorized → captured" in corrections
    # the divergence kind in words, its code kept visible beside it
    assert (
        'data-kind="status_mismatch">status divergente <span class="muted" title="status_mismatch">'
        in corrections
    )
    assert "(3 transações; moedas diferentes nunca são somadas)" in corrections
    # the closing report: opened from object storage; its text shown here, escaped
    report = html[html.index('data-testid="closing-report"') :]
    html_id = closed_incident.artifacts["closing_report_html"].id
    assert f'href="../artifacts/{html_id}" data-testid="closing-report-link"' in report
    assert 'data-testid="closing-report-text"' in report and iid in report
    _no_raw_hostile(html)


def test_an_incident_lists_its_artifacts_and_those_of_its_runs(client, closed_incident):
    html = client.get(f"/incidents/{closed_incident.incident_id}").text
    listed = re.findall(r'data-testid="artifact" data-kind="(\w+)" data-artifact-id="(\d+)"', html)
    a = closed_incident.artifacts
    assert listed == [
        ("snapshot", str(a["snapshot"].id)),
        ("dry_run", str(a["dry_run"].id)),
        ("closing_report", str(a["closing_report"].id)),
        ("closing_report_html", str(a["closing_report_html"].id)),
        ("snapshot", str(a["early_snapshot"].id)),  # same run, recorded before the incident
    ]  # not the other run's PSP ticket
    link = f'href="../artifacts/{a["dry_run"].id}" data-testid="artifact-link">correction_k-adyen.csv</a>'
    assert link in html
    assert a["dry_run"].sha256 in html and f"{len(DRY_RUN_CSV)} bytes" in html
    run_link = "../runs/billing_gateway_remediation/manual__2026-11-20T12%3A30%3A00%2B00%3A00/artifacts"
    assert f'href="{run_link}"' in html
    assert "Investigação" in html and "Correção de Dados" in html
    # no storage URL or server path reaches the page
    assert "file://" not in html and str(closed_incident.store_dir) not in html


def test_the_json_twin_of_an_incident(client, closed_incident, dashboard_db):
    body = client.get(f"/api/incidents/{closed_incident.incident_id}").json()
    assert body["state"] == "closed" and body["state_label"] == "encerrado" and body["closed_at"]
    assert body["finance_ticket"] == "FIN-88<b>" and body["psp_ticket"].startswith("ADY-7 <script>")
    assert body["reason"] == f"finance report {HOSTILE}"  # JSON carries the data as it is
    assert [e["step"] for e in body["timeline"]][:2] == ["incident.opened", "investigation.snapshot"]
    assert body["corrected_totals"] == {"BRL": 1125, "EUR": 2550}
    assert {c["currency"] for c in body["corrections"]} == {"BRL", "EUR"}
    assert body["closing_report"]["markdown"] == closed_incident.closing_markdown
    assert body["closing_report"]["artifact"]["kind"] == "closing_report_html"
    assert all(a["href"].startswith("/recon/artifacts/") for a in body["artifacts"])
    assert "file://" not in str(body)
    stripe = client.get(f"/api/incidents/{dashboard_db.incident_id}").json()
    assert stripe["figures"]["by_currency"]["EUR"]["divergent_amount_minor"] == 962910
    assert stripe["corrections"][0]["approved_by"] == "finance.bia"
    assert stripe["artifacts"] == [] and stripe["closing_report"]["markdown"] is None


@pytest.mark.parametrize(
    "bad", ["INCIDENT-abc", "472", "incident-1", "INCIDENT-1234567890123456789", "<script>"]
)
def test_a_malformed_incident_id_is_400(client, dashboard_db, bad):
    page = client.get(f"/incidents/{bad}")
    assert page.status_code == 400
    assert "Identificador de incidente inválido" in page.text and "INCIDENT-&lt;número&gt;" in page.text
    assert "<script>" not in page.text.split("<body>", 1)[1].split("<script>\n//", 1)[0]
    answer = client.get(f"/api/incidents/{bad}")
    assert answer.status_code == 400 and "INCIDENT-<número>" in answer.json()["error"]


def test_an_unknown_incident_is_404(client, dashboard_db):
    page = client.get("/incidents/INCIDENT-999999")
    assert page.status_code == 404 and "O incidente INCIDENT-999999 não existe." in page.text
    assert 'href="../incidents"' in page.text  # the way back
    assert client.get("/api/incidents/INCIDENT-999999").status_code == 404


def test_an_unknown_path_under_the_incidents_is_a_portuguese_404(client, closed_incident):
    page = client.get(f"/incidents/{closed_incident.incident_id}/nothing-here")
    assert page.status_code == 404 and "Esta página não existe." in page.text
    assert 'href="../../incidents"' in page.text  # back to /recon/incidents


def test_the_closing_report_stored_on_the_incident(client, closed_incident, dashboard_db):
    answer = client.get(f"/incidents/{closed_incident.incident_id}/closing-report")
    assert answer.status_code == 200 and answer.text == closed_incident.closing_html
    assert answer.headers["content-security-policy"].startswith("sandbox")
    none_yet = client.get(f"/incidents/{dashboard_db.incident_id}/closing-report")
    assert none_yet.status_code == 404 and "ainda não tem relatório de encerramento" in none_yet.text


def test_without_a_database_the_pages_say_so(monkeypatch):
    from fastapi.testclient import TestClient

    from airflow_recon_provider.plugins.dashboard_app import create_app
    from airflow_recon_provider.plugins.dashboard_data import DashboardReader

    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_RECON_DB", raising=False)
    with TestClient(create_app(reader=DashboardReader(billing_gateway_conn_id="no_such_recon_db"),
                               require_login=False)) as client:  # fmt: skip
        page = client.get("/incidents")
        assert page.status_code == 503 and "no_such_recon_db" in page.text
        assert client.get("/api/incidents/INCIDENT-1").status_code == 503


def test_the_incident_pages_in_english(dashboard_db, closed_incident, monkeypatch):
    """``[recon] language = en``: the list, an incident, a run's artifacts and the problem pages
    in English, through the same catalog (pt-BR is the default, above)."""
    from fastapi.testclient import TestClient

    from airflow_recon_provider.plugins.dashboard_app import create_app

    monkeypatch.setenv("AIRFLOW__RECON__LANGUAGE", "en")
    iid = closed_incident.incident_id
    with TestClient(create_app(require_login=False)) as client:
        listing = client.get("/incidents").text
        html = client.get(f"/incidents/{iid}").text
        run = client.get(
            "/runs/billing_gateway_remediation/manual__2026-11-20T12%3A30%3A00%2B00%3A00/artifacts"
        ).text
        bad = client.get("/incidents/INCIDENT-abc")
        bad_json = client.get("/api/incidents/INCIDENT-abc").json()
        past = client.get("/incidents", params={"page": 9})
        body = client.get(f"/api/incidents/{iid}").json()

    assert '<html lang="en">' in listing and "<h1>Incidents</h1>" in listing
    assert "Incidents <strong>1\N{EN DASH}2</strong> of <strong>2</strong> · page 1 of 1." in listing
    stripe = _row(listing, dashboard_db.incident_id)
    assert ">open<" in stripe and "BRL 164,740.52" in stripe and "converted to BRL" in stripe
    assert "EUR 9,629.10" in stripe and "1 EUR = 6.2875 BRL (since 2026-12-06 00:00 UTC" in stripe
    assert ">closed<" in _row(listing, iid) and "finance: <code>FIN-88&lt;b&gt;</code>" in listing

    assert '<html lang="en">' in html and ">closed<" in html
    for heading in ("Detection", "Communication", "Timeline", "Data Correction", "Artifacts", "Closure"):
        assert f"<h2>{heading}</h2>" in html
    timeline = html[html.index('data-testid="timeline"') : html.index('data-testid="corrections-section"')]
    row = r'<tr data-step="([^"]+)">\s*<td class="num">[^<]+</td>\s*<td class="section">([^<]+)</td>'
    assert re.findall(row + r"\s*<td>([^<]+)</td>", timeline)[:4] == [
        ("incident.opened", "Detection", "Incident opened"),
        ("investigation.snapshot", "Investigation", "Database snapshot"),
        ("incident.psp_ticket", "Communication", "PSP ticket recorded"),
        ("incident.state", "Recovery Criteria", "State: open → recovered"),
    ]
    assert "7 events, in the order they happened, each with its runbook step." in html
    corrections = html[
        html.index('data-testid="corrections-section"') : html.index('data-testid="artifacts-section"')
    ]
    assert (
        '<strong data-currency="BRL">BRL 11.25</strong> · <strong data-currency="EUR">EUR 25.50</strong>'
        in corrections
    )
    assert (
        'data-kind="status_mismatch">different status <span class="muted" title="status_mismatch">'
        in corrections
    )
    assert "(3 transactions; different currencies are never added)" in corrections
    assert "Database snapshot (CSV)" in html and "(download)" in html and "4,090 bytes" in html
    assert "Record the PSP ticket" not in html  # closed: no form
    # the page's own words (the timeline's outcomes and the closing report are what was written then)
    own = html[: html.index('data-testid="closing-report-text"')]
    for portuguese in ("Detecção", "Linha do tempo", "transações", "Artefatos", "Revisão", "Etapa"):
        assert portuguese not in own
    assert body["state_label"] == "closed" and body["artifacts"][0]["label"] == "Database snapshot (CSV)"

    assert "<h1>Artifacts of the run</h1>" in run and "Open the run in Airflow" in run
    assert bad.status_code == 400 and "<h1>Invalid address</h1>" in bad.text
    assert "The format is INCIDENT-&lt;number&gt;, for example INCIDENT-472." in bad.text
    assert "Back to the list of incidents" in bad.text
    assert "Invalid incident id: 'INCIDENT-abc'. The format is INCIDENT-<number>" in bad_json["error"]
    assert past.status_code == 404 and "Page 9 does not exist: there are 2 incidents in 1 page." in past.text


def test_the_psp_ticket_form_of_an_open_incident_in_both_languages(client, dashboard_db, monkeypatch):
    """The form on an open incident: its label, the format in its title and its button."""
    html = client.get(f"/incidents/{dashboard_db.incident_id}").text
    form = html[
        html.index('data-testid="psp-ticket-form"') : html.index(
            "</form>", html.index('data-testid="psp-ticket-form"')
        )
    ]
    assert "Número dado pelo PSP" in form and 'placeholder="ex.: STRIPE-8812"' in form
    assert (
        'title="letras e algarismos (ao menos um algarismo), com - _ . / # : ou espaços simples no '
        'meio, até 64 caracteres"' in form
    )
    assert (
        "Registrar ticket do PSP" in form
        and "requer permissão de edição na DAG billing_gateway_remediation" in form
    )
    monkeypatch.setenv("AIRFLOW__RECON__LANGUAGE", "en")
    html = client.get(f"/incidents/{dashboard_db.incident_id}").text
    assert "Number given by the PSP" in html and 'placeholder="e.g. STRIPE-8812"' in html
    assert "letters and digits (at least one digit), with - _ . / # : or single spaces inside" in html
    assert (
        "Record the PSP ticket" in html
        and "needs edit permission on the DAG billing_gateway_remediation" in html
    )
