"""Issue 17 in the real Airflow UI (the same demo Airflow as the other browser tests): windows
that cannot be mistyped, errors in words where people look, the dashboard's truth at a
glance. As ``oncall`` with the browser — and so the Airflow UI — in America/Sao_Paulo, and
as ``finance``.

Runs after ``test_remediation_in_the_ui`` (the 12 corrections it approved are on the
dashboard); every run started here is a dry run or refused, so the demo's data is left as
that test left it."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

import psycopg
import pytest
from browser_support import login, shot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

DAG_ID = "billing_gateway_remediation"
SAO_PAULO = "America/Sao_Paulo"


def _runs(ui) -> set[str]:
    with psycopg.connect(ui.airflow_uri, autocommit=True) as conn:
        return {r for (r,) in conn.execute("SELECT run_id FROM dag_run WHERE dag_id = %s", (DAG_ID,))}


def _note(ui, run_id: str, *, timeout: float = 180) -> str:
    """The run's note once the scope step wrote it (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(ui.airflow_uri, autocommit=True) as conn:
            row = conn.execute(
                "SELECT n.content FROM dag_run_note n JOIN dag_run r ON r.id = n.dag_run_id"
                " WHERE r.dag_id = %s AND r.run_id = %s",
                (DAG_ID, run_id),
            ).fetchone()
        if row and row[0] and "Validar Escopo" in row[0]:
            return row[0]
        time.sleep(2)
    raise AssertionError(f"run {run_id}: no note from the scope step after {timeout:.0f} s")


def _trigger_in_airflow(page, ui, fields: dict[str, str], *, hours: int | None = None) -> str:
    """Fill Airflow's own trigger form (PSP stripe, the given text fields, dry run left ticked)
    and return the new run's id."""
    page.goto(f"{ui.url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    psp = dialog.get_by_role("combobox").first
    psp.click()
    psp.fill("Stripe")
    page.keyboard.press("Enter")
    for name, value in fields.items():
        page.locator(f"#element_{name}").fill(value)
    if hours is not None:  # the form's only number field: the duration
        dialog.get_by_role("spinbutton").fill(str(hours))
    page.locator("#element_reason").fill("issue 17: a window typed by a person")  # a required field
    before = _runs(ui)
    dialog.get_by_role("button", name="Trigger").click()
    page.wait_for_url(re.compile(rf"/dags/{DAG_ID}/runs/manual__"))
    (run_id,) = _runs(ui) - before
    return run_id


def _dashboard(page, ui):
    page.goto(f"{ui.url}/plugin/reconciliacao-financeira")
    frame = page.frame_locator("iframe").first
    frame.locator("[data-testid=psp-row]").first.wait_for()
    return frame


def test_a_window_typed_in_sao_paulo_lands_on_its_utc_hours(ui, browser):
    """The demo prints its window in UTC (e.g. 22:00Z to 01:00Z). With the UI in
    America/Sao_Paulo, oncall types the same window as São Paulo wall time with its offset and
    a duration: the run reads the intended UTC hours and says so in both zones on its note."""
    start = datetime.fromisoformat(ui.window_start.replace("Z", "+00:00"))
    end = datetime.fromisoformat(ui.window_end.replace("Z", "+00:00"))
    hours = int((end - start) / timedelta(hours=1))
    local_start = (start - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M") + "-03:00"

    oncall = login(browser, ui, "oncall", "oncall-demo", timezone_id=SAO_PAULO)
    assert oncall.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") == SAO_PAULO
    oncall.goto(f"{ui.url}/dags/{DAG_ID}")
    oncall.get_by_role("button", name="Trigger").first.click()
    dialog = oncall.get_by_role("dialog")
    # every window field says its zone and format; the duration cannot pass the maximum
    assert dialog.get_by_text("Início da janela (com fuso: Z = UTC)").count() == 1
    assert dialog.get_by_text(re.compile(r"AAAA-MM-DDTHH:MMZ \(UTC\) ou com o fuso")).count() >= 1
    assert dialog.get_by_role("spinbutton").get_attribute("aria-valuemax") == "744"
    # the incident's format is said under the field, before anyone types a wrong one
    assert dialog.get_by_text(re.compile(r"Formato: INCIDENT-<número>")).count() == 1
    oncall.keyboard.press("Escape")

    run_id = _trigger_in_airflow(oncall, ui, {"window_start": local_start}, hours=hours)
    with psycopg.connect(ui.airflow_uri, autocommit=True) as conn:
        (conf,) = conn.execute(
            "SELECT conf FROM dag_run WHERE dag_id = %s AND run_id = %s", (DAG_ID, run_id)
        ).fetchone()
    assert conf["window_start"] == local_start and conf["window_hours"] == hours and conf["dry_run"] is True
    note = _note(ui, run_id)
    utc = f"{start:%Y-%m-%d %H:%M} a {end:%Y-%m-%d %H:%M} UTC"
    assert note.startswith(f"Validar Escopo: PSP Stripe, janela {utc} ("), note
    assert f"em {SAO_PAULO}, {hours} h); simulação" in note, note
    oncall.goto(f"{ui.url}/dags/{DAG_ID}/runs/{run_id}")
    oncall.get_by_text(re.compile(r"Validar Escopo: PSP Stripe")).first.wait_for()
    shot(oncall, "12-run-note-window")


def test_bad_requests_are_refused_with_the_reason_where_people_look(ui, browser):
    """End before start in Airflow's form: the run fails at once at scope and the reason is
    on its note and on the dashboard's recent runs. On the dashboard's form, an end before
    the start, a 90-day window and a malformed incident id are refused before anything is
    posted, each with its reason beside the form."""
    oncall = login(browser, ui, "oncall", "oncall-demo", timezone_id=SAO_PAULO)
    start = datetime.fromisoformat(ui.window_start.replace("Z", "+00:00"))
    inverted = {
        "window_start": (start + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%MZ"),
        "window_end": start.strftime("%Y-%m-%dT%H:%MZ"),
    }
    run_id = _trigger_in_airflow(oncall, ui, inverted)
    note = _note(ui, run_id)
    assert (
        note.startswith("Recusado em Validar Escopo: o fim da janela")
        and "anterior ou igual ao início" in note
    )

    frame = _dashboard(oncall, ui)
    refused = frame.locator(f'[data-testid=recent-run][data-run-id="{run_id}"]')
    refused.wait_for()
    assert "recusada" in refused.inner_text()
    assert "o fim deve ser depois do início" in refused.locator("[data-testid=run-note]").inner_text()
    frame.locator("#execucoes-recentes").scroll_into_view_if_needed()
    shot(oncall, "13-dashboard-refused-run")

    form = frame.locator('form.remediate[data-psp="stripe"]')
    problems = form.locator("[data-testid=remediate-problems]")
    before = _runs(ui)
    # the form's zone: America/Sao_Paulo; the fields keep the same instants, shown in it
    utc_start = form.locator("input[name=window_start]").input_value()
    form.locator("select[name=zone]").select_option(SAO_PAULO)
    shown = form.locator("input[name=window_start]").input_value()
    assert datetime.fromisoformat(utc_start) - datetime.fromisoformat(shown) == timedelta(hours=3)
    echo = form.locator("[data-testid=remediate-echo]").inner_text()
    assert " UTC = " in echo and f"em {SAO_PAULO}" in echo, echo

    form.locator("input[name=window_end]").fill(
        (datetime.fromisoformat(shown) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    )
    form.locator("[data-testid=remediate-submit-stripe]").click()
    assert "o fim deve ser depois do início" in problems.inner_text()
    form.locator("input[name=window_end]").fill(
        (datetime.fromisoformat(shown) + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M")
    )
    form.locator("[data-testid=remediate-submit-stripe]").click()
    assert "passa do máximo de 744 h (31 dias)" in problems.inner_text()
    form.locator("input[name=window_end]").fill(
        (datetime.fromisoformat(shown) + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M")
    )
    form.locator("input[name=incident_id]").fill("inc 472")
    form.locator("[data-testid=remediate-submit-stripe]").click()
    says = problems.inner_text()
    assert "Incidente “inc 472” fora do formato: use INCIDENT-<número>" in says and "INCIDENT-472" in says
    form.scroll_into_view_if_needed()
    shot(oncall, "14-dashboard-form-refuses")
    assert _runs(ui) == before  # nothing was posted


def test_finance_sees_the_truth_at_a_glance_and_every_correction(ui, browser):
    """As finance: badges in words, the lag beside the failed cycles, "10 de 12" corrections
    with the way to the other two, and a real run on a PSP within thresholds asks first,
    saying what it will do."""
    finance = login(browser, ui, "finance", "finance-demo")
    frame = _dashboard(finance, ui)
    rows = frame.locator("[data-testid=psp-row]")
    for i in range(rows.count()):
        status = rows.nth(i).locator("[data-testid=psp-status]").inner_text()
        assert status and "alert billing_gateway" not in status and status.strip() not in {"OK", "ALERT"}
        lag = rows.nth(i).locator("[data-testid=psp-lag]").inner_text()
        lag_says = (
            r"^(\d+ ciclos?|em dia \(0 ciclos\)|nunca reconciliado)"
            r"( · \d+ ciclos? com falha na janela)?$"
        )
        assert re.match(lag_says, lag), lag

    stripe = frame.locator('[data-testid=psp-detail][data-psp="stripe"]')
    count = stripe.locator("[data-testid=corrections-count]")
    assert count.inner_text().startswith("10 de 12 correções"), count.inner_text()
    stripe.locator("[data-testid=corrections-all]").click()
    frame.locator("[data-testid=corrections-range]").wait_for()
    assert (
        frame.locator("[data-testid=corrections-range]")
        .inner_text()
        .startswith("1\N{EN DASH}12 de 12 correções")
    )
    assert frame.locator("[data-testid=correction-row]").count() == 12
    assert "finance" in frame.locator("[data-testid=corrections]").inner_text()
    shot(finance, "15-all-corrections")

    # a real run on a PSP within thresholds: the form says what it will do, and waits
    frame = _dashboard(finance, ui)
    calm = next(
        psp
        for psp in ("adyen", "pagseguro")
        if frame.locator(f'form.remediate[data-psp="{psp}"]').get_attribute("data-within-thresholds")
        == "true"
    )
    form = frame.locator(f'form.remediate[data-psp="{calm}"]')
    before = _runs(ui)
    form.locator("input[name=dry_run]").uncheck()
    form.locator(f"[data-testid=remediate-submit-{calm}]").click()
    confirm = form.locator("[data-testid=remediate-confirm]")
    confirm.wait_for()
    says = confirm.inner_text()
    assert "dentro dos limites agora" in says
    for effect in ("pausa a reconciliação automática", "avisa o financeiro", "abre um incidente"):
        assert effect in says, says
    assert " UTC = " in says
    confirm.scroll_into_view_if_needed()
    shot(finance, "16-real-run-confirmation")
    confirm.get_by_role("button", name="Voltar").click()
    assert confirm.is_hidden() and _runs(ui) == before  # nothing started without the confirmation


def test_a_person_reads_the_pages_in_english_and_back_in_portuguese(ui, browser):
    """Pages in Portuguese by default, English switchable by the person who reads them: the
    dashboard's "English" link (in Airflow's iframe), then the incident pages opened on their
    own keep the choice (a cookie) until "Português" switches back."""
    finance = login(browser, ui, "finance", "finance-demo")
    frame = _dashboard(finance, ui)
    assert frame.locator("html").get_attribute("lang") == "pt-BR"
    switch = frame.locator("[data-testid=language-switch]")
    assert switch.locator("[aria-current=true]").inner_text() == "Português"
    switch.locator("a[data-lang=en]").click()
    frame.locator('html[lang="en"]').wait_for()
    frame.get_by_text("Recent runs").first.wait_for()
    frame.locator("[data-testid=psp-row]").first.wait_for()
    shot(finance, "17-dashboard-in-english")

    finance.goto(f"{ui.url}/recon/incidents?lang=en")
    assert finance.locator("html").get_attribute("lang") == "en"
    incident = finance.locator('a[href^="incidents/INCIDENT-"]').first
    incident.click()
    finance.wait_for_url(re.compile(r"/recon/incidents/INCIDENT-\d+$"))
    assert finance.locator("html").get_attribute("lang") == "en"  # the cookie kept the choice
    finance.get_by_text("All incidents").first.wait_for()
    shot(finance, "18-incident-in-english")
    finance.locator("[data-testid=language-switch] a[data-lang=pt-BR]").click()
    finance.locator('html[lang="pt-BR"]').wait_for()
    finance.get_by_text("Todos os incidentes").first.wait_for()
