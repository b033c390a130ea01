"""Detecção 2 in the real Airflow UI: finance files a report from the dashboard's
*Reportar divergência* form (``/recon/``, inside the "Reconciliação Financeira" page). A bad
field is refused in pt-BR next to the field, and nothing is started or recorded; the fixed
report goes on the PSP's incident (opened if none is open), starts the dry-run
investigation as the logged-in user, and the incident page shows that dry run's findings:
divergence by kind and currency, gateway vs statement, the ledger beside them.

This module runs after ``test_remediation_in_the_ui`` on the same demo (the ``ui`` fixture
is per folder): by then stripe's first incident is closed, and the report opens or attaches
to the open one. It also runs alone."""

from __future__ import annotations

import json
import re
import time

import psycopg
import pytest
from browser_support import login, shot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

REPORT_DAG = "billing_gateway_finance_report"
REMEDIATION_DAG = "billing_gateway_remediation"
PSP = "stripe"


def _rows(uri: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(uri, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def _remediation_runs(ui) -> list[str]:
    return [
        row[0]
        for row in _rows(ui.airflow_uri, "SELECT run_id FROM dag_run WHERE dag_id = %s", (REMEDIATION_DAG,))
    ]


def _wait_for_run(uri: str, dag_id: str, run_id: str, *, timeout: float = 480) -> None:
    """Poll the demo's metadata database until the run succeeded (a bound, not a timing
    assertion); a failed run fails at once with its task states."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        found = _rows(uri, "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
        state = found[0][0] if found else None
        if state in ("success", "failed"):
            break
        time.sleep(2)
    if state != "success":
        tasks = _rows(
            uri,
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = %s AND run_id = %s "
            "ORDER BY task_id",
            (dag_id, run_id),
        )
        raise AssertionError(f"{dag_id} run {run_id}: {state} after at most {timeout:.0f} s; tasks {tasks}")


def _fill(form, *, start: str, end: str, ticket: str, description: str) -> None:
    form.locator("select[name=psp]").select_option(PSP)
    # datetime-local inputs take "YYYY-MM-DDTHH:MM" (the form's times are UTC)
    form.locator("input[name=window_start]").fill(start.removesuffix("Z")[:16])
    form.locator("input[name=window_end]").fill(end.removesuffix("Z")[:16])
    form.locator("input[name=finance_ticket]").fill(ticket)
    form.locator("textarea[name=description]").fill(description)


def test_finance_reports_a_divergence_from_the_dashboard(ui, browser):
    def reports() -> list[tuple]:
        return _rows(
            ui.gateway_uri,
            "SELECT e.incident_id, e.details FROM recon.incident_events e "
            "JOIN recon.incidents i USING (incident_id) "
            "WHERE i.psp = %s AND e.step = 'detection.finance_report'",
            (PSP,),
        )

    def report_runs() -> list[tuple]:
        return _rows(
            ui.airflow_uri,
            "SELECT run_id, conf, triggering_user_name FROM dag_run WHERE dag_id = %s",
            (REPORT_DAG,),
        )

    assert reports() == [] and report_runs() == []
    finance = login(browser, ui, "finance", "finance-demo")
    finance.goto(f"{ui.url}/plugin/reconciliacao-financeira")
    frame = finance.frame_locator("iframe").first
    form = frame.locator("form.finance-report")
    form.wait_for()
    description = "Capturas do extrato da Stripe que não aparecem no relatório financeiro (FIN-88)."

    # -- a ticket that is not FIN-<n>: refused next to its field, in pt-BR; nothing starts ------
    _fill(form, start=ui.window_start, end=ui.window_end, ticket="88", description=description)
    form.locator("[data-testid=finance-report-submit]").click()
    error = form.locator("[data-error-for=finance_ticket]")
    error.wait_for()
    assert error.inner_text() == (
        "Ticket do financeiro '88' inválido: o formato é FIN-<número>, por exemplo FIN-88."
    )
    for other in ("psp", "window_start", "window_end", "description"):
        assert form.locator(f"[data-error-for={other}]").inner_text() == "", other
    assert form.locator("[data-role=status]").inner_text() == "Corrija os campos indicados."
    form.scroll_into_view_if_needed()
    shot(finance, "8-finance-report-refused")
    # the server refuses it too, by field, in pt-BR, when a page skips the browser's check
    answer = finance.request.post(
        f"{ui.url}/recon/api/finance-report/check",
        data={
            "psp": PSP,
            "window_start": ui.window_start,
            "window_end": ui.window_end,
            "finance_ticket": "FIN88",
            "description": description,
        },
    )
    assert answer.status == 400, answer.text()
    problems = answer.json()["errors"]
    assert list(problems) == ["finance_ticket"] and "FIN-<número>" in problems["finance_ticket"]
    assert reports() == [] and report_runs() == []  # nothing recorded, nothing started

    # -- the fixed report: the DAG runs as finance, the incident gets it, a dry run starts -------
    form.locator("input[name=finance_ticket]").fill("FIN-88")
    form.locator("[data-testid=finance-report-submit]").click()
    run_link = form.locator("[data-testid=finance-report-run]")
    try:
        run_link.wait_for(timeout=60_000)
    except Exception:  # the form says why ("Não enviado: ...") and which field
        raise AssertionError(form.inner_text()) from None
    assert form.locator("[data-error-for=finance_ticket]").inner_text() == ""
    shot(finance, "9-finance-report-sent")
    ((run_id, conf, user),) = report_runs()
    assert user == "finance" and run_link.inner_text() == run_id
    assert conf["psp"] == PSP and conf["finance_ticket"] == "FIN-88"
    assert conf["description"] == description
    assert conf["window_start"].startswith(ui.window_start.removesuffix("Z")[:16])
    _wait_for_run(ui.airflow_uri, REPORT_DAG, run_id)

    ((incident_id, details),) = reports()
    assert details["finance_ticket"] == "FIN-88" and details["reported_by"] == "finance"
    assert details["incident_action"] in ("opened", "attached"), details
    ((state,),) = _rows(
        ui.gateway_uri, "SELECT state FROM recon.incidents WHERE incident_id = %s", (incident_id,)
    )
    assert state in ("open", "mitigating"), state
    dry_run_id = details["dry_run"]["run_id"]
    ((dry_conf,),) = _rows(
        ui.airflow_uri,
        "SELECT conf FROM dag_run WHERE dag_id = %s AND run_id = %s",
        (REMEDIATION_DAG, dry_run_id),
    )
    assert dry_conf["dry_run"] is True and dry_conf["incident_id"] == incident_id
    _wait_for_run(ui.airflow_uri, REMEDIATION_DAG, dry_run_id)

    # -- Investigação 2: the first investigation of stripe's window collected the error lines of
    # the break's failed tries (the demo ran stripe's window cycles with its statement service
    # down; the logs come back through the api-server's REST API, connection airflow_api). It is
    # this dry run's, or the remediation's when test_remediation_in_the_ui ran first (its
    # reprocessing then left no failed cycle for this dry run to look at)
    collections = _rows(
        ui.gateway_uri,
        "SELECT run_id, details ->> 'status', details -> 'tries', outcome FROM recon.incident_events"
        " WHERE step = 'investigation.task_logs' ORDER BY id",
    )
    assert collections, "no investigation recorded the failed tries' logs"
    (collector, status, tries, outcome) = collections[0]
    assert collector in _remediation_runs(ui), collector  # a billing_gateway_remediation run
    assert status == "collected", outcome
    assert outcome.startswith("Logs das tarefas com falha coletados"), outcome
    broken = [t for t in tries if t["run_id"].startswith("demo_break__stripe__")]
    assert len(broken) >= 2, tries  # the window's last cycle may also be the scheduler's own run
    for attempt in tries:
        assert (attempt["task_id"], attempt["state"]) == ("fetch_psp_statements", "failed"), attempt
        assert attempt["lines"][-1].startswith("PspUnavailableError: PSP API"), attempt["lines"]
        assert "answered HTTP 503" in attempt["lines"][-1], attempt["lines"]
    assert "Bearer ey" not in json.dumps(tries)

    # -- the incident page shows the report and the dry run's findings ---------------------------
    finance.goto(f"{ui.url}/recon/incidents/{incident_id}")
    article = finance.locator('article[data-testid=finance-report][data-ticket="FIN-88"]')
    try:
        article.wait_for()
    except Exception:  # what the page says instead
        shot(finance, "failed-finance-report-incident")
        raise AssertionError(finance.locator("body").inner_text()[:3000]) from None
    assert article.locator("[data-testid=finance-report-by]").inner_text() == "finance"
    assert article.locator("[data-testid=finance-report-description]").inner_text() == description
    assert article.locator("[data-testid=finance-report-dry-run]").inner_text() == dry_run_id
    findings = article.locator("[data-testid=finance-findings]")
    findings.wait_for()
    # divergence by kind and currency: stripe's window keeps at least the amount mismatches and
    # the authorization missing from the statement (the correction only fixes the 12 captures)
    by_currency = findings.locator("[data-testid=finance-findings-by-currency]")
    kinds = {
        by_currency.locator("tbody tr").nth(i).get_attribute("data-kind")
        for i in range(by_currency.locator("tbody tr").count())
    }
    assert {"amount_mismatch", "missing_in_statement", "total"} <= kinds, kinds
    # each currency's total in its own currency (never added across currencies)
    totals = by_currency.locator('tr[data-kind="total"]')
    for i in range(totals.count()):
        code = totals.nth(i).get_attribute("data-currency")
        assert re.fullmatch(r"[A-Z]{3}", code or ""), code
        assert re.search(r"\d,\d{2}", totals.nth(i).inner_text()), totals.nth(i).inner_text()
    # gateway vs statement per status and currency, with the rows that differ flagged
    sides = findings.locator("[data-testid=finance-findings-sides] tbody tr")
    assert sides.count() >= 2
    assert findings.locator("[data-testid=finance-findings-sides]").get_by_text("difere").count() >= 1
    # the ledger beside them, per status
    # the ledger beside the gateway per status and currency (ledger.transactions.currency)
    ledger = findings.locator("[data-testid=finance-findings-ledger] tbody tr")
    assert ledger.count() >= 1, findings.inner_text()
    for i in range(ledger.count()):
        code = ledger.nth(i).get_attribute("data-currency")
        assert re.fullmatch(r"[A-Z]{3}", code or ""), (code, ledger.nth(i).inner_text())
    article.scroll_into_view_if_needed()
    shot(finance, "10-finance-report-findings")
    findings.locator("[data-testid=finance-findings-ledger]").scroll_into_view_if_needed()
    shot(finance, "11-finance-report-ledger")
