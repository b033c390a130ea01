"""The alert in PagerDuty through the package's DAGs (``dag.test()``, real PostgreSQL, the
Events API v2 stand-in over HTTP): the divergence watch triggers it with the incident's dedup
key, a re-fire while the incident is open lands on the same PagerDuty incident, the
incident's mitigation acknowledges it and its recovery resolves it; PagerDuty down (HTTP 500,
or nobody listening) never holds the run up and is on the timeline; the routing key is
nowhere but in the request to PagerDuty."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pagerduty_support import ROUTING_KEY, pagerduty_connection, paging_events, whole_timeline_text

pytestmark = [pytest.mark.dags, pytest.mark.integration, pytest.mark.timeout(240)]

WATCH = "billing_gateway_divergence_watch"


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def _xcom(run, task_id: str):
    return run.get_task_instance(task_id).xcom_pull(task_ids=task_id)


def _lifecycle_dag(incident_id: str, *, ack_inline: bool = False):
    """The incident's life as the remediation walks it (mitigating, recovered, closed), with
    the PagerDuty steps where ``billing_gateway_remediation`` has them. ``ack_inline``: the
    acknowledge sits in the chain, to show a PagerDuty failure lets the next step run."""
    from airflow.sdk import DAG

    from airflow_recon_provider.operators.incidents import IncidentTransitionOperator
    from airflow_recon_provider.operators.pagerduty import PagerDutyIncidentEventOperator

    dag_id = f"pagerduty_lifecycle_{incident_id.lower().replace('-', '_')}_{os.getpid()}_{ack_inline}"
    with DAG(dag_id=dag_id, schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC)) as dag:
        mitigating = IncidentTransitionOperator(
            task_id="mark_mitigating", incident_id=incident_id, to_state="mitigating"
        )
        ack = PagerDutyIncidentEventOperator(
            task_id="pagerduty_acknowledge", incident_id=incident_id, action="acknowledge", note="mitigating"
        )
        recovered = IncidentTransitionOperator(
            task_id="mark_recovered", incident_id=incident_id, to_state="recovered"
        )
        resolve = PagerDutyIncidentEventOperator(
            task_id="pagerduty_resolve", incident_id=incident_id, action="resolve", note="recovered"
        )
        closed = IncidentTransitionOperator(
            task_id="close_incident", incident_id=incident_id, to_state="closed"
        )
        if ack_inline:
            mitigating >> ack >> recovered >> closed
        else:
            mitigating >> [ack, recovered]
            recovered >> closed
        recovered >> resolve
    return dag


def _remediation_started(incident_id: str) -> bool:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return (
            session.query(DagRun)
            .filter(DagRun.dag_id == "billing_gateway_remediation", DagRun.run_id == f"watch__{incident_id}")
            .count()
            == 1
        )


def _no_routing_key_anywhere(db, capfd, caplog, *runs) -> None:
    assert ROUTING_KEY not in whole_timeline_text(db)
    captured = capfd.readouterr()
    assert ROUTING_KEY not in captured.out + captured.err + caplog.text
    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    for path in logs.rglob("*") if logs.is_dir() else []:
        if path.is_file():
            assert ROUTING_KEY not in path.read_text(errors="replace"), path
    for run in runs:
        for ti in run.get_task_instances():
            assert ROUTING_KEY not in repr(ti.xcom_pull(task_ids=ti.task_id)), ti.task_id


def test_remediation_acknowledges_at_mitigation_and_resolves_at_recovery(recon_dags):
    dag = recon_dags.dags["billing_gateway_remediation"]
    ack = dag.get_task("mitigate.pagerduty_acknowledge")
    resolve = dag.get_task("close.pagerduty_resolve")
    assert ack.upstream_task_ids == {"mitigate.mark_mitigating"} and ack.action == "acknowledge"
    assert resolve.upstream_task_ids == {"close.mark_recovered"} and resolve.action == "resolve"
    # off the runbook's chain: the acknowledge is a leaf of the mitigation group (the recovery
    # gate after it runs on "none_failed", and the step always ends successfully), the
    # resolve a leaf of the run (only the lease teardown after it)
    assert ack.downstream_task_ids == {"recover.proceed", "release_lease"}
    assert dag.get_task("recover.proceed").trigger_rule == "none_failed"
    assert dag.get_task("mitigate.reprocess").upstream_task_ids == {"mitigate.mark_mitigating"}
    assert resolve.downstream_task_ids == {"release_lease"}
    watch = recon_dags.dags[WATCH]
    assert watch.get_task("page_oncall").upstream_task_ids == {"collect_alerts", "open_incidents"}
    assert not watch.get_task("page_oncall").downstream_task_ids


def test_trigger_refire_acknowledge_resolve_one_pagerduty_incident(
    watch_dag, breached, pagerduty, recon_dags, register_dag, capfd, caplog
):
    run = watch_dag.test()
    states = _states(run)
    assert states["open_incidents"] == "success" and states["page_oncall"] == "success", states
    (incident_id,) = breached.execute("SELECT incident_id FROM recon.incidents").fetchone()
    key = f"billing_gateway-reconciliation:stripe:{incident_id}"
    assert _remediation_started(incident_id)

    # the trigger: the incident's dedup key, severity of the reason, figures, links
    (trigger,) = pagerduty.accepted("trigger")
    assert trigger["dedup_key"] == key and trigger["routing_key"] == ROUTING_KEY
    payload = trigger["payload"]
    assert payload["severity"] == "error" and payload["source"] == WATCH and payload["component"] == "stripe"
    details = payload["custom_details"]
    assert details["reasons"] == ["amount"] and details["incident_id"] == incident_id
    total = details["divergence"]["total_in_reporting_currency"]
    assert (total["amount_minor"], total["currency"], total["text"], total["count"]) == (
        750000,
        "BRL",
        "R$ 7.500,00",
        1,
    )
    assert details["divergence"]["by_currency"]["BRL"]["text"] == "R$ 7.500,00"
    assert details["lag"]["cycles"] == 0
    assert {link["href"] for link in trigger["links"]} == {
        "http://airflow.example:8080/recon/",
        f"http://airflow.example:8080/dags/billing_gateway_remediation/runs/watch__{incident_id}",
    }
    (sent,) = _xcom(run, "page_oncall")
    assert sent["status"] == "sent" and sent["dedup_key"] == key and sent["attempts"] == 1

    # a re-fire while the incident is open (the same alert again): same key, one incident
    from airflow_recon_provider.operators.pagerduty import PagerDutyAlertOperator

    alert = _xcom(run, "collect_alerts")
    again = PagerDutyAlertOperator(task_id="page_oncall", alerts=alert).execute({"run_id": "refire"})
    assert [r["dedup_key"] for r in again] == [key]
    assert len(pagerduty.accepted("trigger")) == 2
    (incident,) = pagerduty.incidents_for(key)
    assert incident.status == "triggered" and incident.events == ["trigger", "trigger (deduplicated)"]

    # mitigation acknowledges it, recovery resolves it; a re-run sends nothing more
    lifecycle = register_dag(_lifecycle_dag(incident_id))
    life = lifecycle.test()
    assert set(_states(life).values()) == {"success"}, _states(life)
    assert _xcom(life, "pagerduty_acknowledge")["status"] == "sent"
    assert _xcom(life, "pagerduty_resolve")["status"] == "sent"
    (incident,) = pagerduty.incidents_for(key)
    assert incident.status == "resolved"
    assert incident.events == ["trigger", "trigger (deduplicated)", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in pagerduty.accepted()} == {key}
    assert all(e["accepted"] for e in pagerduty.events)  # every event passed the schema check

    # every event sent is on the incident's timeline, in order, with its key and outcome
    events = paging_events(breached, incident_id)
    assert [(d["event_action"], d["status"], d["dedup_key"]) for _, d in events] == [
        ("trigger", "sent", key),
        ("trigger", "sent", key),
        ("acknowledge", "sent", key),
        ("resolve", "sent", key),
    ]
    assert events[0][0] == f"PagerDuty trigger enviado (error): {key}"
    assert events[0][1]["severity"] == "error" and events[0][1]["connection"] == "pagerduty_recon"

    from airflow_recon_provider.operators.pagerduty import PagerDutyIncidentEventOperator

    rerun = PagerDutyIncidentEventOperator(task_id="r", incident_id=incident_id, action="resolve")
    assert rerun.execute({"run_id": "rerun"})["reason"] == "the PagerDuty alert is already resolved"
    assert len(pagerduty.events) == 4
    _no_routing_key_anywhere(breached, capfd, caplog, run, life)


@pytest.mark.parametrize("outage", ["pagerduty_down", "pagerduty_unreachable"])
def test_pagerduty_unavailable_never_holds_the_run_up(
    watch_dag, outage, breached, recon_dags, request, capfd, caplog
):
    request.getfixturevalue(outage)
    run = watch_dag.test()
    states = _states(run)
    assert run.state == "success", states
    assert states["page_oncall"] == "success" and states["start_remediation"] == "success", states
    (incident_id,) = breached.execute("SELECT incident_id FROM recon.incidents").fetchone()
    assert _remediation_started(incident_id)

    ((outcome, details),) = paging_events(breached, incident_id)
    assert details["status"] == "failed" and details["event_action"] == "trigger"
    assert details["dedup_key"] == f"billing_gateway-reconciliation:stripe:{incident_id}"
    assert "PagerDutyUnavailableError" in outcome and "gave up after 3 attempts" in outcome
    assert ("HTTP 500" if outage == "pagerduty_down" else "unreachable") in outcome
    if outage == "pagerduty_down":
        assert len(request.getfixturevalue("pagerduty_down").events) == 3  # bounded retries
    # nobody was paged: nothing to acknowledge or resolve later
    (result,) = _xcom(run, "page_oncall")
    assert result["status"] == "failed"
    _no_routing_key_anywhere(breached, capfd, caplog, run)


def test_an_acknowledge_that_fails_lets_the_next_step_run(
    watch_dag, breached, pagerduty, recon_dags, register_dag, monkeypatch, capfd, caplog
):
    run = watch_dag.test()
    (incident_id,) = breached.execute("SELECT incident_id FROM recon.incidents").fetchone()
    assert [d["status"] for _, d in paging_events(breached, incident_id)] == ["sent"]

    pagerduty.fail_status = 502  # PagerDuty goes down after the trigger
    life = register_dag(_lifecycle_dag(incident_id, ack_inline=True)).test()
    assert life.state == "success" and set(_states(life).values()) == {"success"}, _states(life)
    assert _xcom(life, "pagerduty_acknowledge")["status"] == "failed"
    assert breached.execute(
        "SELECT state FROM recon.incidents WHERE incident_id = %s", (incident_id,)
    ).fetchone() == ("closed",)
    outcomes = [(d["event_action"], d["status"]) for _, d in paging_events(breached, incident_id)]
    assert outcomes == [("trigger", "sent"), ("acknowledge", "failed"), ("resolve", "failed")]

    # PagerDuty is back: the failed resolve is sent once more (its key still names the alert)
    pagerduty.fail_status = None
    from airflow_recon_provider.operators.pagerduty import PagerDutyIncidentEventOperator

    done = PagerDutyIncidentEventOperator(task_id="r", incident_id=incident_id, action="resolve")
    assert done.execute({"run_id": "later"})["status"] == "sent"
    (incident,) = pagerduty.incidents_for(f"billing_gateway-reconciliation:stripe:{incident_id}")
    assert incident.status == "resolved"
    _no_routing_key_anywhere(breached, capfd, caplog, run, life)


def test_a_missing_connection_is_recorded_and_the_watch_goes_on(watch_dag, breached, recon_dags, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_PAGERDUTY_RECON", raising=False)
    run = watch_dag.test()
    assert run.state == "success", _states(run)
    (incident_id,) = breached.execute("SELECT incident_id FROM recon.incidents").fetchone()
    ((outcome, details),) = paging_events(breached, incident_id)
    assert details["status"] == "failed"
    assert "ConnectionMissingError" in outcome and "'pagerduty_recon' is not defined" in outcome


def test_an_empty_connection_variable_pages_nobody(watch_dag, breached, recon_dags, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_RECON_PAGERDUTY_CONN_ID", "")
    monkeypatch.setenv("AIRFLOW_CONN_PAGERDUTY_RECON", pagerduty_connection("http://127.0.0.1:9"))
    run = watch_dag.test()
    assert run.state == "success" and _xcom(run, "page_oncall") == []
    (incident_id,) = breached.execute("SELECT incident_id FROM recon.incidents").fetchone()
    assert paging_events(breached, incident_id) == []


def _finance_report(incident_id: str, ticket: str, window) -> dict:
    """What ``billing_gateway_finance_report``'s record step hands its PagerDuty step."""
    return {
        "psp": "stripe",
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "finance_ticket": ticket,
        "description": "Ledger acima do extrato da Stripe",
        "incident_id": incident_id,
        "incident_action": "opened",
        "reported_by": "finance",
        "dry_run": {"run_id": f"finance_report__{ticket}__r1"},
    }


def test_a_finance_report_pages_at_low_urgency_and_a_breach_is_never_left_low(
    breached, pagerduty, now_cycle, capfd, caplog
):
    """Detecção 2 at low urgency (severity info, the incident's dedup key); the divergence
    watch firing for that incident later resolves the low-urgency alert and triggers its own
    (PagerDuty keeps an open alert's urgency); a report on an open high-urgency alert is
    added to it, nobody paged twice. Every event on the timeline."""
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.operators.pagerduty import (
        PagerDutyAlertOperator,
        PagerDutyFinanceReportOperator,
    )
    from airflow_recon_provider.reconciliation.config import ReconConfig
    from airflow_recon_provider.reconciliation.detection import Detection, watch_window

    window = watch_window(now_cycle, 3)
    incident_id = IncidentHook().open_incident(
        "stripe", window=window, reason="finance report FIN-7", actor="finance"
    )
    key = f"billing_gateway-reconciliation:stripe:{incident_id}"

    # finance's report: a trigger of severity info opens the incident's alert, low urgency
    report = PagerDutyFinanceReportOperator(
        task_id="page_oncall", report=_finance_report(incident_id, "FIN-7", window)
    )
    sent = report.execute({"run_id": "report-1"})
    assert (
        sent["status"] == "sent" and sent["severity"] == "info" and sent["urgency"] == "low (severity info)"
    )
    (low,) = pagerduty.incidents_for(key)
    assert (low.status, low.severity, low.urgency) == ("triggered", "info", "low")

    # the watch fires for the same incident (R$ 7.500,00 above R$ 5.000: severity error)
    summary = BillingGatewayHook(config=ReconConfig.load()).summary("stripe", window)
    alert = Detection(summary, None, datetime.now(UTC)).event_payload()
    assert alert["reasons"] == ["amount"]
    (paged,) = PagerDutyAlertOperator(task_id="page_oncall", alerts=[alert]).execute({"run_id": "watch-1"})
    assert paged["status"] == "sent" and paged["severity"] == "error"
    first, second = pagerduty.incidents_for(key)
    assert (first.status, first.events) == ("resolved", ["trigger", "resolve"])
    assert (second.status, second.severity, second.urgency) == ("triggered", "error", "high")

    # a second report while that alert is open: added to it (deduplicated), still high urgency
    again = PagerDutyFinanceReportOperator(
        task_id="page_oncall", report=_finance_report(incident_id, "FIN-8", window)
    )
    added = again.execute({"run_id": "report-2"})
    assert added["status"] == "sent" and added["urgency"].startswith("added to the open alert (error")
    _, second = pagerduty.incidents_for(key)
    assert second.events == ["trigger", "trigger (deduplicated)"] and second.urgency == "high"
    assert {e["dedup_key"] for e in pagerduty.accepted()} == {key}
    assert all(e["accepted"] for e in pagerduty.events)

    events = paging_events(breached, incident_id)
    assert [(d["event_action"], d["status"], d.get("severity")) for _, d in events] == [
        ("trigger", "sent", "info"),
        ("resolve", "sent", "info"),
        ("trigger", "sent", "error"),
        ("trigger", "sent", "info"),
    ]
    assert events[0][0] == (
        f"PagerDuty trigger enviado (info): {key} — relato FIN-7: "
        "plantão avisado no PagerDuty com baixa urgência"
    )
    assert events[1][0] == f"PagerDuty resolve enviado: {key} — alerta info substituído por um error"
    assert events[3][0].endswith("relato FIN-8: anexado ao alerta já aberto no PagerDuty (error)")
    assert [d.get("finance_ticket") for _, d in events] == ["FIN-7", None, None, "FIN-8"]
    _no_routing_key_anywhere(breached, capfd, caplog)
