"""``billing_gateway_remediation`` from trigger to closure with ``dag.test()``, on the seeded
divergence of ``remediation_dag_support``: real PostgreSQL, the local PSP API, billing core,
SMTP server and Slack stand-in; the reprocess child runs executed by the test (no scheduler
under ``dag.test``), finance's approval answered by a test thread. And a dry run, which
changes nothing."""

from __future__ import annotations

import csv
import io
import json

import pytest
from artifact_checks import artifact_text, assert_artifact_link, assert_no_local_paths
from remediation_dag_support import (
    WINDOW_END,
    WINDOW_START,
    checksum,
    dag_runs_of,
    states,
    xcom,
)

from airflow_recon_provider.devtools.demo_airflow import HitlAnswerer

pytestmark = [pytest.mark.dags, pytest.mark.integration, pytest.mark.timeout(300)]

#: what dag.test() records as the triggering user (AIRFLOW3-NOTES)
REQUESTER = "dag_test"
APPROVER = "finance.bia"
ONCALL = "oncall.ana"
PSP_TICKET = "STRIPE-CASE 2026/8812"
CONF = {"psp": "stripe", "window_start": WINDOW_START, "window_end": WINDOW_END}


def timeline(db, incident_id: str) -> list[tuple]:
    return db.execute(
        "SELECT step, outcome, actor, run_id, divergent_amount_minor, divergent_count, divergence_pct"
        " FROM recon.incident_events WHERE incident_id = %s ORDER BY id",
        (incident_id,),
    ).fetchall()


def all_xcoms(dag_run) -> dict[str, object]:
    """Every XCom value of the run (return values and the dry-run summary)."""
    found = {}
    for ti in dag_run.get_task_instances():
        for key in ("return_value", "dry_run"):
            value = ti.xcom_pull(task_ids=ti.task_id, key=key)
            if value is not None:
                found[f"{ti.task_id}:{key}"] = value
    return found


def csv_rows(summary) -> list[dict[str, str]]:
    """A CSV artifact's rows, read the dashboard's way (recon.artifacts, the object store)."""
    return list(csv.DictReader(io.StringIO(artifact_text(summary), newline="")))


def test_from_trigger_to_closure(
    remediation_dag,
    register_dag,
    scenario,
    psp_api,
    finance_conns,
    core_api,
    workdir,
    children_run_by_the_test,
    db,
):
    answerer = HitlAnswerer(
        remediation_dag.dag_id, chosen="Approve", user=APPROVER, task_id="mitigate.correct_transactions"
    )
    answerer.start()
    # Comunicação 3: on-call gives the number the PSP gave the ticket, in the entry form
    ticket_number = HitlAnswerer(
        remediation_dag.dag_id,
        chosen="OK",
        user=ONCALL,
        task_id="communicate.psp_ticket_number",
        params_input={"psp_ticket": PSP_TICKET},
    )
    ticket_number.start()
    dag_run = remediation_dag.test(
        run_conf={
            **CONF,
            "dry_run": False,
            "after_release": True,
            "reason": "finance ticket FIN-88: captures missing in the report",
        }
    )
    answerer.finish()
    ticket_number.finish()
    task_states = states(dag_run)
    assert dag_run.state == "success", task_states
    assert set(task_states.values()) == {"success"}, task_states

    scope = xcom(dag_run, "investigate.scope")
    incident_id = scope["incident_id"]
    assert scope["incident_action"] == "opened" and incident_id.startswith("INCIDENT-")
    assert (scope["dry_run"], scope["after_release"], scope["requested_by"]) == (False, True, REQUESTER)
    assert scope["figures"]["divergent_count"] == scenario.divergent_count

    # investigation: the snapshot CSV (its link in XCom, never the rows) and the checks beside it
    snapshot = xcom(dag_run, "investigate.snapshot")
    assert_artifact_link(snapshot["snapshot"], kind="snapshot")
    assert len(csv_rows(snapshot["snapshot"])) == snapshot["snapshot"]["rows"]
    assert snapshot["snapshot"]["rows"] == scenario.gateway_rows_in_window
    assert snapshot["outcome"] == "divergent"
    assert snapshot["summary"]["by_kind"]["status_mismatch"]["count"] == 12
    assert snapshot["cycles"]["by_status"] == {"success": 1, "failed": 2}
    assert snapshot["ledger"]["status"] == "ok" and snapshot["ledger"]["matches"] is False
    assert snapshot["kafka"]["status"] == "not configured"
    assert snapshot["psp_health"]["outcome"] == "healthy"

    # containment: paused by the requester during the run, resumed at the end
    history = db.execute(
        "SELECT state, actor, incident_id, run_id FROM recon.control_events WHERE psp = 'stripe' ORDER BY id"
    ).fetchall()
    assert history == [
        ("paused", REQUESTER, incident_id, dag_run.run_id),
        ("active", REQUESTER, incident_id, dag_run.run_id),
    ]
    assert db.execute("SELECT state FROM recon.controls WHERE psp = 'stripe'").fetchone() == ("active",)

    # reprocessing: one child run per cycle, reconciled although the PSP was paused
    reprocess = xcom(dag_run, "mitigate.reprocess")
    assert [c["state"] for c in reprocess["cycles"]] == ["success"] * 3
    assert len(children_run_by_the_test) == 3 and core_api.requests == []
    assert {(r["psp"], r["from"]) for r in psp_api.requests} == {
        ("stripe", "2026-11-20T11:00:00Z"),
        ("stripe", "2026-11-20T12:00:00Z"),
        ("stripe", "2026-11-20T13:00:00Z"),
    }

    # correction: approved by finance (not the requester), applied, audited, in the notes
    assert answerer.request["task_id"] == "mitigate.correct_transactions"
    correction = xcom(dag_run, "mitigate.correct_transactions")
    assert correction["outcome"] == "applied" and correction["approved_by"] == APPROVER
    assert correction["result"]["applied"] == 12
    dry_csv = assert_artifact_link(correction["dry_run"]["artifact_record"], kind="dry_run")
    assert len(csv_rows(dry_csv)) == 12
    # finance saw the link to that CSV in the approval text, before answering
    assert f"]({dry_csv['link']})" in answerer.request["body"]
    statuses = dict(
        db.execute(
            "SELECT id, status FROM payment_transactions WHERE id = ANY(%s)",
            (list(scenario.status_mismatch_ids),),
        ).fetchall()
    )
    assert set(statuses.values()) == {"captured"}
    audit = db.execute(
        "SELECT transaction_id, requested_by, approved_by, run_id, incident_id, before->>'status',"
        " after->>'status' FROM recon.corrections ORDER BY transaction_id"
    ).fetchall()
    assert audit == [
        (tid, REQUESTER, APPROVER, dag_run.run_id, incident_id, "authorized", "captured")
        for tid in sorted(scenario.status_mismatch_ids)
    ]
    notes = [
        line
        for (text,) in db.execute("SELECT notes FROM payment_reconciliation_logs WHERE psp = 'stripe'")
        for line in text.splitlines()
        if line.startswith("data correction ")
    ]
    assert len(notes) == 12

    # PSP ticket: the external divergences that remain, as a CSV for the PSP
    ticket = xcom(dag_run, "mitigate.psp_ticket")
    rows = csv_rows(assert_artifact_link(ticket["artifact"], kind="psp_ticket"))
    assert sorted(r["kind"] for r in rows) == ["amount_mismatch", "amount_mismatch", "missing_in_statement"]

    # the PSP ticket number: asked once the CSV existed (its link in the form), recorded on
    # the incident by whoever answered, and shown by the closing report and the final update
    assert f"]({ticket['artifact']['link']})" in ticket_number.request["body"]
    assert xcom(dag_run, "communicate.psp_ticket_number") == {
        "psp_ticket": PSP_TICKET,
        "recorded": True,
        "responded_by": ONCALL,
        "incident_id": incident_id,
    }
    assert db.execute(
        "SELECT psp_ticket FROM recon.incidents WHERE incident_id = %s", (incident_id,)
    ).fetchone() == (PSP_TICKET,)
    assert db.execute(
        "SELECT outcome, actor, details->>'psp_ticket' FROM recon.incident_events"
        " WHERE incident_id = %s AND step = 'incident.psp_ticket'",
        (incident_id,),
    ).fetchall() == [(f"Ticket do PSP {PSP_TICKET}", ONCALL, PSP_TICKET)]

    # release: rolled back (the break followed a release) and tagged, by the local script
    actions = json.loads(workdir["release"].read_text())
    assert [(a["action"], a["service"], a["env"]) for a in actions] == [
        ("rollback", "billing-gateway-worker", "prod"),
        ("tag", "billing-gateway-worker", "prod"),
    ]

    # recovery: what remains is under R$ 500 and 10 keys, the two latest cycles succeeded
    recovery = xcom(dag_run, "recover.recovery_criteria")
    assert recovery["divergent_count"] == 3
    assert recovery["divergent_amount_minor"] == scenario.remaining_amount
    assert recovery["latest_cycle_states"] == ["success", "success"]
    # ... and the ledger, which booked the 12 captures the gateway still had as authorized,
    # agrees with the statement but for the authorization missing there and the two capture
    # amounts the PSP reported a few cents off (+7 and -13, here in two currencies)
    ledger = recovery["ledger"]
    assert (ledger["met"], ledger["differing_count"]) == (True, 1)
    off = sorted(
        (
            line["status"],
            line["ledger_count"] - line["statement_count"],
            line["ledger_amount_minor"] - line["statement_amount_minor"],
        )
        for line in ledger["lines"]
        if not line["aligned"]
    )
    assert off == [("authorized", 1, scenario.missing_amount), ("captured", 0, -7), ("captured", 0, 13)]

    # the incident: every step on its timeline, with who, which run and the divergence then
    incident = db.execute(
        "SELECT state, psp, opened_by FROM recon.incidents WHERE incident_id = %s", (incident_id,)
    )
    assert incident.fetchone() == ("closed", "stripe", REQUESTER)
    events = timeline(db, incident_id)
    steps = [e[0] for e in events]
    for step in (
        "incident.opened",
        "investigation.scope",
        "investigation.snapshot",
        "containment.pause",
        "communication.containment_notice",
        "mitigation.reprocess",
        "mitigation.data_correction",
        "mitigation.rollback",
        "mitigation.psp_ticket",
        "recovery.criteria",
        "closure.resume",
        "closure.tag_release",
        "incident.closing_report",
        "communication.normalized",
    ):
        assert step in steps, (step, steps)
    assert (
        steps.index("containment.pause") < steps.index("mitigation.reprocess") < steps.index("closure.resume")
    )
    assert [e[1] for e in events if e[0] == "incident.state"] == [
        "aberto → em mitigação: Mitigação iniciada (runbook)",
        "em mitigação → recuperado: critérios de recuperação atendidos",
        "recuperado → encerrado: Encerramento (runbook)",
    ]
    assert {e[3] for e in events} == {dag_run.run_id}
    # the snapshot's findings in words: cycles counted, sources and health named, no raw dict
    (snapshot,) = [e[1] for e in events if e[0] == "investigation.snapshot"]
    assert "{" not in snapshot and "'" not in snapshot, snapshot
    assert "ciclos " in snapshot and ("com sucesso" in snapshot or "com falha" in snapshot), snapshot
    assert "not configured" not in snapshot and "healthy" not in snapshot, snapshot
    own_steps = {"investigation.scope", "investigation.snapshot", "containment.pause", "mitigation.reprocess",
                 "mitigation.rollback", "mitigation.psp_ticket", "recovery.criteria", "closure.resume",
                 "closure.tag_release", "incident.state"}  # fmt: skip
    assert {e[2] for e in events if e[0] in own_steps} == {REQUESTER}
    with_figures = {e[0]: e[4:] for e in events if e[4] is not None}
    for step in (
        "investigation.scope",
        "investigation.snapshot",
        "mitigation.reprocess",
        "recovery.criteria",
    ):
        assert step in with_figures, step
    assert with_figures["recovery.criteria"][:2] == (scenario.remaining_amount, 3)
    # the correction's own events (the request, the approver's apply) and the figures after it
    corrections = [(e[1], e[2], e[4]) for e in events if e[0] == "mitigation.data_correction"]
    assert corrections[0][:2] == ("aprovação solicitada ao financeiro", REQUESTER)
    assert ("correções aplicadas", APPROVER) in [c[:2] for c in corrections]
    assert corrections[-1][0] == f"12 correções aplicadas, aprovadas por {APPROVER}"
    assert corrections[-1][2] == scenario.remaining_amount

    # closure: the closing report attached and written; finance and the channel told
    report = xcom(dag_run, "close.closing_report")
    markdown = artifact_text(assert_artifact_link(report["markdown"], kind="closing_report"))
    assert incident_id in markdown and APPROVER in markdown and "Lições aprendidas" in markdown
    assert "<h2>Lições aprendidas</h2>" in artifact_text(report["html"])
    assert f"| Ticket do PSP | {PSP_TICKET} |" in markdown, markdown
    recovered = markdown.split("## Critérios de Recuperação")[1].split("## Números finais")[0]
    assert "- 3. Relatório financeiro alinhado com extratos PSP: atendido — o ledger difere" in recovered
    # the runbook's step names on the timeline of the report, never the internal ids
    assert "Investigação — Validar Escopo" in markdown and "investigation.scope" not in markdown
    assert "Ações de Contenção — Reconciliação automática pausada" in markdown
    assert "containment.pause" not in markdown
    slack = finance_conns["slack"].texts
    assert any("reconciliação de stripe pausada por dag_test" in t for t in slack), slack
    assert any("reconciliação de stripe retomada por dag_test" in t for t in slack), slack
    subjects = [m["Subject"].strip() for m in finance_conns["smtp"].messages]
    assert any("reconciliação de stripe pausada" in s for s in subjects), subjects
    assert len(subjects) == 2, subjects  # the containment notice and the final update

    # every artifact of the run in recon.artifacts, on the incident; links everywhere, no path
    artifacts = db.execute(
        "SELECT kind, task_id FROM recon.artifacts WHERE incident_id = %s ORDER BY id", (incident_id,)
    ).fetchall()
    assert sorted(artifacts) == [
        ("closing_report", "close.closing_report"),
        ("closing_report_html", "close.closing_report"),
        ("dry_run", "mitigate.correct_transactions"),
        ("psp_ticket", "mitigate.psp_ticket"),
        ("release_record", "close.tag_release"),
        ("release_record", "mitigate.rollback_release"),
        ("snapshot", "investigate.snapshot"),
    ]
    events = db.execute(
        "SELECT outcome, details FROM recon.incident_events WHERE incident_id = %s", (incident_id,)
    ).fetchall()
    messages = [m.as_string() for m in finance_conns["smtp"].messages]
    assert any(report["markdown"]["link"] in m for m in messages)  # the final update links the report
    final_update = finance_conns["smtp"].messages[-1].get_body(("plain",)).get_content()
    assert f"Ticket do PSP: {PSP_TICKET}" in " ".join(final_update.split()), final_update
    assert_no_local_paths(
        all_xcoms(dag_run),
        answerer.request["body"],
        events,
        messages,
        finance_conns["slack"].texts,
        roots=[workdir["artifacts"].parent],
        what="remediation",
    )

    # Encerramento 4: the closing e-mail invites finance to the review, at the first weekday
    # 10:00 in Sao Paulo after the closing moment (a valid .ics read back from the SMTP server)
    from datetime import datetime, time, timedelta
    from zoneinfo import ZoneInfo

    from icalendar import Calendar

    sao_paulo = ZoneInfo("America/Sao_Paulo")
    (closed_at,) = db.execute(
        "SELECT closed_at FROM recon.incidents WHERE incident_id = %s", (incident_id,)
    ).fetchone()
    day = closed_at.astimezone(sao_paulo).date()
    while day.weekday() >= 5 or datetime.combine(day, time(10), tzinfo=sao_paulo) <= closed_at:
        day += timedelta(days=1)
    [invitation] = [
        p for p in finance_conns["smtp"].messages[-1].walk() if p.get_content_type() == "text/calendar"
    ]
    assert invitation.get_param("method") == "REQUEST"
    (event,) = Calendar.from_ical(invitation.get_payload(decode=True)).events
    assert event.start == datetime.combine(day, time(10), tzinfo=sao_paulo)
    assert event.end - event.start == timedelta(hours=1)
    assert str(event["URL"]) == report["html"]["link"]
    assert [str(a) for a in event.attendees] == ["mailto:finance@platform.io"]
    review = xcom(dag_run, "close.schedule_finance_review")
    assert review["scheduled"] is True and str(event["UID"]) == review["review"]["uid"]
    (outcome,) = [e[1] for e in timeline(db, incident_id) if e[0] == "closure.finance_review"]
    assert outcome.startswith("revisão agendada para ") and f", {day.day} de " in outcome, outcome
    assert "das 10:00 às 11:00 (America/Sao_Paulo) com finance@platform.io" in outcome, outcome

    # one real remediation per PSP at a time: the scope took the PSP's lease for this run and
    # incident, the last task gave it back
    assert (scope["lease"]["outcome"], scope["lease"]["incident_id"]) == ("acquired", incident_id)
    assert xcom(dag_run, "release_lease")["released"] is True
    assert db.execute("SELECT count(*) FROM recon.remediation_leases").fetchone() == (0,)
    lease_events = db.execute(
        "SELECT event, dag_id, run_id, incident_id FROM recon.remediation_lease_events ORDER BY id"
    ).fetchall()
    assert lease_events == [
        ("acquired", remediation_dag.dag_id, dag_run.run_id, incident_id),
        ("released", remediation_dag.dag_id, dag_run.run_id, incident_id),
    ]


def test_dry_run_changes_nothing(
    remediation_dag, register_dag, scenario, psp_api, finance_conns, core_api, workdir, db
):
    before = checksum(db)
    runs_before = dag_runs_of("billing_gateway_reconciliation")
    dag_run = remediation_dag.test(run_conf=CONF)  # dry_run defaults to true
    task_states = states(dag_run)
    assert dag_run.state == "success", task_states

    ran = {task for task, state in task_states.items() if state == "success"}
    assert ran == {
        "investigate.scope",
        "investigate.snapshot",
        "contain.proceed",
        "mitigate.proceed",
        "mitigate.correct_transactions",
        "recover.proceed",
        "release_lease",  # the teardown: a dry run held no lease, nothing to give back
    }, task_states
    assert {state for task, state in task_states.items() if task not in ran} == {"skipped"}

    scope = xcom(dag_run, "investigate.scope")
    assert scope["dry_run"] is True
    assert (scope["incident_action"], scope["incident_id"]) == ("would_open", None)
    correction = xcom(dag_run, "mitigate.correct_transactions")
    assert correction["outcome"] == "dry_run"
    assert correction["dry_run"]["proposal_count"] == 12
    assert len(csv_rows(correction["dry_run"]["artifact_record"])) == 12
    assert csv_rows(xcom(dag_run, "investigate.snapshot")["snapshot"])
    # a dry run has no incident: its artifacts are the run's
    kinds = db.execute(
        "SELECT kind, incident_id FROM recon.artifacts WHERE run_id = %s ORDER BY id", (dag_run.run_id,)
    ).fetchall()
    assert kinds == [("snapshot", None), ("dry_run", None)]
    assert_no_local_paths(all_xcoms(dag_run), roots=[workdir["artifacts"].parent], what="dry run")

    # nothing paused, reprocessed, corrected, opened or sent
    assert checksum(db) == before
    assert dag_runs_of("billing_gateway_reconciliation") == runs_before
    assert psp_api.requests == [] and core_api.requests == []
    assert finance_conns["slack"].posts == [] and finance_conns["smtp"].messages == []
    # a dry run neither takes the PSP's remediation lease nor asks for it
    assert scope["lease"] is None and xcom(dag_run, "release_lease")["released"] is False
    assert db.execute("SELECT count(*) FROM recon.remediation_lease_events").fetchone() == (0,)
