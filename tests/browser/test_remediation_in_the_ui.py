"""The runbook in the real Airflow UI: the on-call engineer triggers
``billing_gateway_remediation`` from its form, finance approves the correction in
*Required actions*, and the "Reconciliação Financeira" dashboard shows the PSPs, the
incident and the approved corrections. Screenshots go to docs/screenshots/ (README)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import psycopg
import pytest
from browser_support import login, shot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

DAG_ID = "billing_gateway_remediation"


def _wait_for(
    what: str,
    query: str,
    params: tuple,
    expected,
    *,
    uri: str,
    timeout: float = 360,
    logs: Path | None = None,
    explain=None,
) -> None:
    """Poll the demo's metadata database until ``query`` returns ``expected`` (a bound, not
    a timing assertion: the scheduler and the triggerer run on their own clocks). A task
    that ends otherwise fails the wait at once, with the end of its Airflow task logs;
    ``explain()`` adds what the failure message should say besides."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with psycopg.connect(uri, autocommit=True) as conn:
            last = conn.execute(query, params).fetchall()
        if last == expected:
            return
        if last and last[0][0] in ("failed", "upstream_failed"):
            break
        time.sleep(2)
    extra = explain() if explain is not None else ""
    raise AssertionError(f"{what}: {last} after at most {timeout:.0f} s\n{_task_logs(logs, params)}{extra}")


def _task_logs(logs: Path | None, params: tuple) -> str:
    """The end of the Airflow task logs of the task in ``params`` (dag, run, task), if any."""
    if logs is None or len(params) < 3:
        return ""
    found = sorted(logs.rglob(f"*task_id={params[2]}*/**/*.log")) or sorted(logs.rglob(f"*{params[2]}*"))
    text = "\n".join(f"--- {f}\n{f.read_text(errors='replace')[-4000:]}" for f in found if f.is_file())
    return text[-8000:]


def _run_story(ui, run_id: str) -> str:
    """Why a remediation run has not ended: each task's state, the end of the logs of those
    that have not succeeded, and the PSP's latest reconciliation cycles."""
    with psycopg.connect(ui.airflow_uri, autocommit=True) as conn:
        tasks = conn.execute(
            "SELECT task_id, map_index, state, try_number FROM task_instance"
            " WHERE dag_id = %s AND run_id = %s ORDER BY start_date NULLS LAST, task_id",
            (DAG_ID, run_id),
        ).fetchall()
        runs = conn.execute(
            "SELECT run_id, run_type, state, conf FROM dag_run"
            " WHERE dag_id = 'billing_gateway_reconciliation' ORDER BY id"
        ).fetchall()
    with psycopg.connect(ui.gateway_uri, autocommit=True) as conn:
        cycles = conn.execute(
            "SELECT cycle_start, status, created_at, left(notes, 120) FROM payment_reconciliation_logs"
            " WHERE psp = 'stripe' ORDER BY cycle_start DESC, created_at DESC LIMIT 12"
        ).fetchall()
    logs = ui.data_dir / "airflow-home" / "logs"
    text = ["\n--- tasks of the run"] + [f"{t}" for t in tasks]
    text += ["--- runs of billing_gateway_reconciliation"] + [f"{r}" for r in runs]
    text += ["--- stripe's latest reconciliation log rows"] + [f"{c}" for c in cycles]
    for task_id, _, state, _ in tasks:
        if state not in ("success", "skipped"):
            text.append(_task_logs(logs, (DAG_ID, run_id, task_id))[-3000:])
    return "\n".join(text)


def test_trigger_approve_and_follow_on_the_dashboard(ui, browser):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    # -- the on-call engineer triggers the remediation from the form ----------------------------
    oncall = login(browser, ui, "oncall", "oncall-demo")
    oncall.goto(f"{ui.url}/dags/{DAG_ID}")
    oncall.get_by_role("button", name="Trigger").first.click()
    dialog = oncall.get_by_role("dialog")
    psp = dialog.get_by_role("combobox").first
    psp.click()
    psp.fill("Stripe")
    oncall.keyboard.press("Enter")
    # the window is typed with its zone (no date picker in the UI's time zone)
    oncall.locator("#element_window_start").fill(ui.window_start)
    oncall.locator("#element_window_end").fill(ui.window_end)
    dialog.locator("label").filter(has_text="Dry run").first.click()
    oncall.locator("#element_reason").fill("finance ticket FIN-88: captures missing in the report")
    assert not oncall.locator("input[name=element_dry_run]").is_checked()
    shot(oncall, "1-trigger-form")
    dialog.get_by_role("button", name="Trigger").click()
    oncall.wait_for_url(re.compile(rf"/dags/{DAG_ID}/runs/manual__"))
    run_id = oncall.url.rsplit("/runs/", 1)[1].split("/")[0].replace("%2B", "+").replace("%3A", ":")
    with psycopg.connect(ui.airflow_uri, autocommit=True) as conn:
        (conf,) = conn.execute(
            "SELECT conf FROM dag_run WHERE dag_id = %s AND run_id = %s", (DAG_ID, run_id)
        ).fetchone()
    assert conf["psp"] == "stripe" and conf["dry_run"] is False
    assert (conf["window_start"], conf["window_end"]) == (ui.window_start, ui.window_end)
    shot(oncall, "2-run-started")

    # -- finance answers the approval in Required actions ---------------------------------------
    task_state = "SELECT state FROM task_instance WHERE dag_id = %s AND run_id = %s AND task_id = %s"
    _wait_for(
        "the correction's approval request",
        task_state,
        (DAG_ID, run_id, "mitigate.correct_transactions"),
        [("awaiting_input",)],
        uri=ui.airflow_uri,
    )
    finance = login(browser, ui, "finance", "finance-demo")
    finance.goto(f"{ui.url}/required_actions")
    request = finance.get_by_text("Aprovar correção de dados do PSP stripe").first
    request.wait_for()
    request.click()
    finance.get_by_role("button", name="Approve").wait_for()
    assert finance.get_by_text("não pode aprová-la").count() >= 1  # the requester, named
    # the evidence, per line: the gateway's and the PSP's status and amount, each in its currency
    finance.get_by_text("Evidência por transação").first.wait_for()
    evidence = finance.locator("table").filter(has_text="PSP: status").first
    header = evidence.locator("th").all_inner_texts()
    assert header[4:8] == ["gateway: status", "gateway: valor", "PSP: status", "PSP: valor"], header
    first = evidence.locator("tbody tr").first.locator("td").all_inner_texts()
    assert re.match(r"^(R\$|EUR|USD) ", first[5]) and re.match(r"^(R\$|EUR|USD) |sem linha", first[7]), first
    assert "minor units" not in evidence.inner_text()
    shot(finance, "3-required-action")
    evidence.scroll_into_view_if_needed()
    shot(finance, "3b-required-action-evidence")
    # before answering, finance opens the dry run's CSV from the approval itself: a link to
    # the dashboard, which serves it from the artifact store (never a worker's path)
    csv_link = finance.get_by_role("link", name=re.compile(r"correction_.*\.csv"))
    href = csv_link.first.get_attribute("href")
    assert href and "/recon/artifacts/" in href and "file://" not in href, href
    with finance.expect_download() as download_info:
        csv_link.first.click()
    downloaded = Path(download_info.value.path()).read_text(encoding="utf-8")
    lines = downloaded.splitlines()
    assert lines[0].startswith("transaction_id,provider_reference") and len(lines) == 1 + 12, downloaded[:500]
    finance.get_by_role("button", name="Approve").click()
    _wait_for(
        "the approved correction",
        task_state,
        (DAG_ID, run_id, "mitigate.correct_transactions"),
        [("success",)],
        uri=ui.airflow_uri,
        logs=ui.data_dir / "airflow-home" / "logs",
    )

    # -- the dashboard: every PSP, stripe's open incident and its timeline ----------------------
    finance.goto(f"{ui.url}/plugin/reconciliacao-financeira")
    frame = finance.frame_locator("iframe").first
    rows = frame.locator("[data-testid=psp-row]")
    rows.first.wait_for()
    assert [rows.nth(i).get_attribute("data-psp") for i in range(rows.count())] == [
        "stripe",
        "adyen",
        "pagseguro",
    ]
    with psycopg.connect(ui.gateway_uri, autocommit=True) as conn:
        (incident_id,) = conn.execute(
            "SELECT incident_id FROM recon.incidents WHERE psp = 'stripe'"
        ).fetchone()
    incident = frame.locator(f'[data-testid=incident][data-incident="{incident_id}"]')
    assert incident.count() == 1 or frame.get_by_text(incident_id).count() >= 1
    shot(finance, "4-dashboard")

    # -- the run ends (reprocess, recovery, closure); the dashboard shows who approved ----------
    _wait_for(
        "the remediation run",
        "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s",
        (DAG_ID, run_id),
        [("success",)],
        uri=ui.airflow_uri,
        explain=lambda: _run_story(ui, run_id),
    )
    finance.reload()
    frame = finance.frame_locator("iframe").first
    corrections = frame.locator("[data-testid=corrections]").first
    corrections.wait_for()
    assert "finance" in corrections.inner_text() and "oncall" in corrections.inner_text()
    with psycopg.connect(ui.gateway_uri, autocommit=True) as conn:
        assert conn.execute(
            "SELECT state FROM recon.incidents WHERE incident_id = %s", (incident_id,)
        ).fetchone() == ("closed",)
        assert conn.execute("SELECT count(*), min(approved_by) FROM recon.corrections").fetchone() == (
            12,
            "finance",
        )
    oncall.goto(f"{ui.url}/dags/{DAG_ID}/runs/{run_id}")
    oncall.get_by_text("success").locator("visible=true").first.wait_for()
    shot(oncall, "5-run-succeeded")

    # -- the closed incident stays readable: its page, with the closing report ------------------
    finance.goto(f"{ui.url}/recon/incidents")
    finance.locator(f'a[href="incidents/{incident_id}"]').first.click()
    finance.wait_for_url(re.compile(rf"/recon/incidents/{incident_id}$"))
    report = finance.locator("[data-testid=closing-report-text]")
    report.wait_for()
    assert incident_id in report.inner_text()
    assert finance.locator("[data-testid=artifact-link]").count() >= 3  # snapshot, dry run, ticket, ...
    shot(finance, "7-closed-incident")
    # ... in pt-BR: the runbook's headings and step names, amounts with their currency
    assert finance.locator("html").get_attribute("lang") == "pt-BR"
    timeline = finance.locator("[data-testid=timeline]")
    sections = timeline.locator("td.section").all_inner_texts()
    assert {"Detecção", "Investigação", "Ações de Contenção", "Encerramento"} <= set(sections), sections
    steps = timeline.locator("tbody tr td:nth-child(3)").all_inner_texts()
    assert "Validar Escopo" in steps and "Reconciliação automática pausada" in steps, steps
    assert not any("." in step and " " not in step for step in steps), steps  # no internal step id
    corrections = finance.locator("[data-testid=corrections]").inner_text()
    assert "status divergente" in corrections and re.search(r"R\$ \d", corrections), corrections
    assert "minor units" not in finance.locator("body").inner_text()
    timeline.scroll_into_view_if_needed()
    shot(finance, "7b-incident-timeline")
    closing_url = finance.locator("[data-testid=closing-report-link]").first.evaluate("a => a.href")
    closing = finance.context.new_page()
    answer = closing.goto(closing_url)
    assert answer is not None and answer.ok and "text/html" in answer.headers["content-type"]
    assert incident_id in closing.content()

    # -- the dashboard's pre-filled form starts a (dry) run as the logged-in user ---------------
    oncall.goto(f"{ui.url}/plugin/reconciliacao-financeira")
    frame = oncall.frame_locator("iframe").first
    form = frame.locator('form.remediate[data-psp="stripe"]')
    form.wait_for()
    start = form.locator("input[name=window_start]").input_value()
    end = form.locator("input[name=window_end]").input_value()
    assert start and end and form.locator("input[name=dry_run]").is_checked()
    form.locator("input[name=reason]").fill("second look after closure")
    shot(oncall, "6-dashboard-remediate")
    form.locator("[data-testid=remediate-submit-stripe]").click()
    try:  # the run is created, then the Airflow UI shows its page
        oncall.wait_for_url(re.compile(rf"/dags/{DAG_ID}/runs/manual__"))
    except PlaywrightTimeout:  # the form says why ("Not started: ...")
        raise AssertionError(form.locator("[data-role=status]").inner_text()) from None
    with psycopg.connect(ui.airflow_uri, autocommit=True) as conn:
        runs = conn.execute(
            "SELECT conf, triggering_user_name FROM dag_run WHERE dag_id = %s AND run_id <> %s",
            (DAG_ID, run_id),
        ).fetchall()
    ((conf, user),) = runs
    assert user == "oncall"
    assert conf == {
        "psp": "stripe",
        "window_start": f"{start}:00Z",
        "window_end": f"{end}:00Z",
        "dry_run": True,
        "reason": "second look after closure",
    }
