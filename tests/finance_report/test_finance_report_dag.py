"""``billing_gateway_finance_report`` run with ``dag.test()``: the incident opened or
attached, the finance ticket on the timeline, the dry run triggered with the right conf (and
then executed here, as a scheduler would, to see its findings recorded), on-call told in
Slack; bad input refused with a clear error and nothing recorded."""

from __future__ import annotations

import pytest
from remediation_dag_support import WINDOW_END, WINDOW_START, checksum, dag_runs_of, states, xcom

CONF = {
    "psp": "stripe",
    "window_start": WINDOW_START,
    "window_end": WINDOW_END,
    "finance_ticket": "FIN-88",
    "description": 'Ledger acima do extrato em R$ 2.000 <script>alert("x")</script>',
}
DRY_RUN_DAG = "billing_gateway_remediation"


def _remediation_conf(run_id: str) -> dict:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == DRY_RUN_DAG, DagRun.run_id == run_id))
        return dict(run.conf)


def _events(db, incident_id: str) -> list[tuple]:
    return db.execute(
        "SELECT step, actor, run_id, details FROM recon.incident_events WHERE incident_id = %s ORDER BY id",
        (incident_id,),
    ).fetchall()


@pytest.fixture
def pagerduty(monkeypatch):
    """The Events API v2 stand-in (schema-checking, on 127.0.0.1); ``pagerduty_recon`` on it."""
    import json

    from airflow_recon_provider.devtools.pagerduty_stand_in import DemoPagerDuty

    server = DemoPagerDuty().start()
    connection = {
        "conn_type": "pagerduty_events",
        "host": server.url,
        "password": "finance-report-routing-key-00032",
        "extra": {"backoff_seconds": 0, "max_attempts": 3, "timeout": 5},
    }
    monkeypatch.setenv("AIRFLOW_CONN_PAGERDUTY_RECON", json.dumps(connection))
    yield server
    server.stop()


@pytest.mark.timeout(300)
def test_a_report_opens_the_incident_starts_the_dry_run_and_tells_slack(
    report_dag, remediation_dag, scenario, finance_conns, workdir, db, pagerduty
):
    before = set(dag_runs_of(DRY_RUN_DAG))
    dag_run = report_dag.test(run_conf=CONF)
    assert dag_run.state == "success", states(dag_run)
    assert set(states(dag_run).values()) == {"success"} and len(states(dag_run)) == 4

    result = xcom(dag_run, "record_report")
    incident_id = result["incident_id"]
    assert result["incident_action"] == "opened"
    (psp, state, reason, opened_by) = db.execute(
        "SELECT psp, state, reason, opened_by FROM recon.incidents"
    ).fetchone()
    assert (psp, state, reason, opened_by) == ("stripe", "open", "finance report FIN-88", "dag_test")

    steps = _events(db, incident_id)
    assert [s[0] for s in steps[:2]] == ["incident.opened", "detection.finance_report"]
    # on-call told in Slack and in PagerDuty (both after the report, in either order)
    assert sorted(s[0] for s in steps[2:]) == [
        "communication.finance_report_slack",
        "communication.pagerduty",
    ]
    details = steps[1][3]
    assert details["finance_ticket"] == "FIN-88" and details["description"] == CONF["description"]
    assert details["reported_by"] == "dag_test" and details["reported_at"]
    assert details["window_start"] == "2026-11-20T11:00:00+00:00"

    # the dry run: triggered at once, not waited for, with the report's window, PSP and incident
    started = set(dag_runs_of(DRY_RUN_DAG)) - before
    dry_id = f"finance_report__FIN-88__{dag_run.run_id}"
    assert started == {dry_id} and details["dry_run"]["run_id"] == dry_id
    assert _remediation_conf(dry_id) == {
        "psp": "stripe",
        "window_start": "2026-11-20T11:00:00+00:00",
        "window_end": "2026-11-20T14:00:00+00:00",
        "incident_id": incident_id,
        "dry_run": True,
    }

    # on-call told in the incidents channel, the description escaped for Slack
    (post,) = finance_conns["slack"].posts
    assert post["channel"] == "#billing-incidents"
    assert "Relato do financeiro FIN-88" in post["text"] and incident_id in post["text"]
    assert "&lt;script&gt;" in post["text"] and "<script>" not in post["text"]
    assert dry_id in post["text"]

    # ... and in PagerDuty at low urgency: a trigger of severity info with the incident's key
    key = f"billing_gateway-reconciliation:stripe:{incident_id}"
    (trigger,) = pagerduty.accepted("trigger")
    assert all(e["accepted"] for e in pagerduty.events)  # the stand-in's schema check
    payload = trigger["payload"]
    assert trigger["dedup_key"] == key and payload["severity"] == "info"
    assert payload["class"] == "finance_report" and payload["component"] == "stripe"
    assert payload["summary"].startswith(
        "billing_gateway-reconciliation: stripe — relato do financeiro FIN-88"
    )
    details = payload["custom_details"]
    assert details["finance_ticket"] == "FIN-88" and details["reasons"] == ["finance_report"]
    assert details["description"] == CONF["description"] and details["dry_run"] == dry_id
    assert details["window"]["start"] == "2026-11-20T11:00:00+00:00" and details["urgency"].startswith(
        "baixa: severidade info"
    )
    assert [link["text"] for link in trigger["links"]] == [
        f"{incident_id} — relato FIN-88 e achados (dashboard)",
        "Simulação (grade do Airflow)",
    ]
    assert trigger["links"][0]["href"].endswith(f"/recon/incidents/{incident_id}")
    (paged,) = pagerduty.incidents_for(key)
    assert (paged.status, paged.severity, paged.urgency) == ("triggered", "info", "low")
    ((outcome, paging),) = [(s[3].get("status"), s[3]) for s in steps if s[0] == "communication.pagerduty"]
    assert outcome == "sent" and paging["severity"] == "info" and paging["finance_ticket"] == "FIN-88"
    assert paging["urgency"] == "low (severity info)" and paging["dedup_key"] == key
    (text,) = db.execute(
        "SELECT outcome FROM recon.incident_events WHERE incident_id = %s"
        " AND step = 'communication.pagerduty'",
        (incident_id,),
    ).fetchone()
    assert text == (
        f"PagerDuty trigger enviado (info): {key} — relato FIN-88: "
        "plantão avisado no PagerDuty com baixa urgência"
    )
    # a retry of the step sends nothing more
    from airflow_recon_provider.operators.pagerduty import PagerDutyFinanceReportOperator

    again = PagerDutyFinanceReportOperator(task_id="page_oncall", report=result)
    assert again.execute({"run_id": dag_run.run_id})["status"] == "already sent"
    assert len(pagerduty.events) == 1

    # the dry run runs (what the scheduler would do): its findings go on the incident
    from airflow_recon_provider.devtools.demo_airflow import drive_dag_run

    payment_data = ("payment_transactions", "psp_statement_lines", "recon.controls", "recon.corrections")
    guarded = checksum(db, payment_data)
    assert drive_dag_run(remediation_dag, dry_id) == "success"
    assert checksum(db, payment_data) == guarded  # a dry run changed nothing
    findings = [s for s in _events(db, incident_id) if s[0] == "investigation.finance_findings"]
    assert len(findings) == 1, _events(db, incident_id)
    (_, _, run_id, found) = findings[0]
    assert run_id == dry_id and found["finance_ticket"] == "FIN-88"
    by_currency = found["divergence"]["by_currency"]
    assert found["divergence"]["divergent_count"] == scenario.divergent_count
    assert by_currency["BRL"]["by_kind"]["status_mismatch"]["count"] >= 1
    assert sum(f["divergent_count"] for f in by_currency.values()) == scenario.divergent_count
    sides = {(line["status"], line["currency"]): line for line in found["gateway_vs_statement"]}
    assert not sides[("authorized", "BRL")]["matches"]  # the 12 captures still authorized
    assert found["ledger"]["status"] == "ok" and found["ledger"]["statuses"]


@pytest.mark.timeout(300)
def test_a_report_attaches_to_the_open_incident(report_dag, scenario, finance_conns, workdir, db):
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation.window import Window

    open_id = IncidentHook().open_incident(
        "stripe", window=Window.parse(WINDOW_START, WINDOW_END), reason="alert (amount)",
        actor="billing_gateway_divergence_watch",
    )  # fmt: skip
    dag_run = report_dag.test(run_conf={**CONF, "finance_ticket": "FIN-89"})
    assert dag_run.state == "success", states(dag_run)
    result = xcom(dag_run, "record_report")
    assert result["incident_id"] == open_id and result["incident_action"] == "attached"
    assert db.execute("SELECT count(*) FROM recon.incidents").fetchone()[0] == 1
    steps = _events(db, open_id)
    report = [s for s in steps if s[0] == "detection.finance_report"]
    assert len(report) == 1 and report[0][3]["finance_ticket"] == "FIN-89"
    assert _remediation_conf(f"finance_report__FIN-89__{dag_run.run_id}")["incident_id"] == open_id
    assert "já aberto; o relato foi anexado" in finance_conns["slack"].posts[0]["text"]
    # no PagerDuty connection here: recorded on the timeline, and the report went on
    (paging,) = [s[3] for s in _events(db, open_id) if s[0] == "communication.pagerduty"]
    assert paging["status"] == "failed" and "pagerduty_recon" in paging["error"], paging
    assert states(dag_run)["page_oncall"] == "success"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"psp": "paypal"}, "is not one of"),
        ({"finance_ticket": "FIN-88'; DROP TABLE recon.incidents; --"}, "does not match"),
        ({"finance_ticket": "<script>alert(1)</script>"}, "does not match"),
        ({"window_start": "yesterday at noon"}, "is not a 'date-time'"),
        ({"description": "x" * 2001}, "is too long"),
        ({"description": "nul\x00byte"}, "does not match"),
    ],
    ids=["unknown-psp", "ticket-sql", "ticket-html", "not-a-date-time", "description-long", "control-char"],
)
def test_the_form_refuses_bad_input_before_any_run(report_dag, recon_config, overrides, message):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=message):
        report_dag.test(run_conf={**CONF, **overrides})


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"window_start": WINDOW_END, "window_end": WINDOW_START}, "precisa ser depois do início"),
        ({"window_end": "2027-02-01T00:00:00Z"}, "maior que o máximo de 31 dias"),
    ],
    ids=["end-before-start", "window-too-large"],
)
def test_a_bad_window_fails_the_report_and_records_nothing(
    report_dag, scenario, finance_conns, db, overrides, words, capsys
):
    before = checksum(db)
    runs_before = dag_runs_of(DRY_RUN_DAG)
    dag_run = report_dag.test(run_conf={**CONF, **overrides})
    task_states = states(dag_run)
    assert dag_run.state == "failed" and task_states["record_report"] == "failed", task_states
    assert {task_states[t] for t in ("start_dry_run", "notify_oncall", "page_oncall")} == {"upstream_failed"}
    captured = capsys.readouterr()
    assert words in captured.out + captured.err  # the task's log: the reason, in pt-BR
    assert checksum(db) == before and dag_runs_of(DRY_RUN_DAG) == runs_before
    assert finance_conns["slack"].posts == []
