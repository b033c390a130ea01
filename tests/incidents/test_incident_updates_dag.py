"""``billing_gateway_incident_updates`` run with ``dag.test()`` for successive 30-minute
logical dates (no sleeping), against real PostgreSQL, a recording SMTP server and a stand-in
for Slack's API: content of each update, re-runs, the final "normalized" update then silence,
a mail outage and its recovery, a run that never happened, a missing connection. And the
closing report, attached by its operator, with FinanceNotifier as the task's callback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from artifact_checks import artifact_text, assert_artifact_link, assert_no_local_paths
from incident_support import UPDATES_DAG_FILE, WINDOW_END, WINDOW_START, next_slot, statement_line

from airflow_recon_provider.hooks.incidents import IncidentHook
from airflow_recon_provider.reconciliation import Window
from airflow_recon_provider.reconciliation.incidents import Step, format_time

pytestmark = [pytest.mark.dags, pytest.mark.integration]

WINDOW = Window(WINDOW_START, WINDOW_END)
HALF_HOUR = timedelta(minutes=30)


def run(dag, at: datetime):
    return dag.test(logical_date=at)


def subject(message) -> str:
    # a folded Subject reads back with the folding space in front
    return message["Subject"].strip()


def text_of(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def counts(db) -> tuple[int, int, int]:
    return tuple(
        db.execute(f"SELECT count(*) FROM recon.{table}").fetchone()[0]
        for table in ("incidents", "incident_events", "notifications")
    )


def open_stripe(hook: IncidentHook) -> str:
    return hook.open_incident(
        "stripe",
        window=WINDOW,
        reason="divergence above the alert threshold",
        actor="divergence-watch",
        run_id="watch__1",
        figures=hook.gateway.summary("stripe", WINDOW),
    )


def test_dag_shape(updates_dag):
    assert updates_dag.dag_id == "billing_gateway_incident_updates"
    assert updates_dag.task_ids == ["send_incident_updates"]
    assert updates_dag.timetable.expression == "*/30 * * * *"
    assert updates_dag.catchup is False and updates_dag.max_active_runs == 1


@pytest.mark.timeout(120)
def test_dag_file_parses_without_heavy_imports(tmp_path):
    script = f"""
import json, runpy, sys
import airflow.sdk
before = set(sys.modules)
runpy.run_path({str(UPDATES_DAG_FILE)!r})
heavy = ("psycopg", "smtplib", "slack_sdk", "airflow.providers.smtp", "airflow.providers.slack",
         "airflow_recon_provider.hooks", "airflow_recon_provider.notifications",
         "airflow_recon_provider.reconciliation")
print(json.dumps({{"heavy": sorted(m for m in set(sys.modules) - before if m.startswith(heavy))}}))
"""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=110
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []


@pytest.mark.timeout(180)
def test_updates_every_30_minutes_until_normalized_then_one_final_email(
    updates_dag, divergent_psp, finance_conns
):
    smtp, slack = finance_conns["smtp"], finance_conns["slack"]
    hook = IncidentHook()
    t0 = next_slot()
    incident_id = open_stripe(hook)
    hook.record_event(incident_id, step="reprocess", outcome="cycle 10:00 re-run: failed", actor="alice")

    assert run(updates_dag, t0).state == "success"
    (first,) = smtp.messages
    assert subject(first) == (
        f"[{incident_id}] atualização da reconciliação de stripe {format_time(t0)} - 34,0909% (R$ 7,50) "
        "divergentes"
    )
    text = text_of(first)
    assert "34,0909% — R$ 7,50 divergentes em 2 transações de R$ 22,00 processados pelo gateway" in text
    assert "cycle 10:00 re-run: failed" in text and "Detecção — Incidente aberto" in text
    assert re.search(r"Ticket do PSP: +nenhum aberto", text)
    assert "Próxima atualização em 30 minutos" in text
    assert len(slack.posts) == 1

    # between two updates: the PSP ticket, mitigation, and a correction that fixes r3
    hook.set_psp_ticket(incident_id, "STRIPE-8812", actor="alice")
    hook.transition(incident_id, "mitigating", actor="alice")
    statement_line(divergent_psp, "r3", 700, 31)
    hook.record_event(
        incident_id,
        step="correction.apply",
        outcome="missing statement line r3 loaded",
        actor="bob",
        details={"approved_by": "carol"},
    )

    assert run(updates_dag, t0 + HALF_HOUR).state == "success"
    second = smtp.messages[1]
    assert "2,2727% (R$ 0,50) divergentes" in subject(second)
    text = text_of(second)
    assert "2,2727% — R$ 0,50 divergentes em 1 transação de R$ 22,00" in text
    assert "caiu de 34,0909% (R$ 7,50) na atualização anterior (-R$ 7,00)" in text
    assert "STRIPE-8812" in text and re.search(r"Estado: +em mitigação", text)
    assert f"Passos executados desde a última atualização ({format_time(t0)})" in text
    assert "missing statement line r3 loaded" in text and "aberto → em mitigação" in text
    assert "cycle 10:00 re-run" not in text  # already told at t0
    assert "STRIPE-8812" in str(slack.posts[1]["blocks"])

    # a re-run of the same slot sends nothing twice
    assert run(updates_dag, t0 + HALF_HOUR).state == "success"
    assert (len(smtp.messages), len(slack.posts)) == (2, 2)

    hook.transition(incident_id, "recovered", actor="recovery-sensor", note="2 green cycles")
    assert run(updates_dag, t0 + 2 * HALF_HOUR).state == "success"
    final = smtp.messages[2]
    assert subject(final) == (
        f"[{incident_id}] reconciliação de stripe normalizada - 2,2727% (R$ 0,50) divergentes"
    )
    assert "esta é a última atualização sobre" in text_of(final)
    assert "em mitigação → recuperado: 2 green cycles" in text_of(final)
    assert "normalizada" in slack.posts[2]["text"]

    # then silence, also once the incident is closed
    hook.transition(incident_id, "closed", actor="alice")
    for n in (3, 4):
        assert run(updates_dag, t0 + n * HALF_HOUR).state == "success"
    assert (len(smtp.messages), len(slack.posts)) == (3, 3)
    assert [(d.kind, d.channel, d.status) for d in hook.deliveries(incident_id)] == [
        ("update", "email", "sent"),
        ("update", "slack", "sent"),
        ("update", "email", "sent"),
        ("update", "slack", "sent"),
        ("normalized", "email", "sent"),
        ("normalized", "slack", "sent"),
    ]
    told = [e for e in hook.timeline(incident_id) if e.is_communication]
    assert [e.step for e in told] == [Step.UPDATE, Step.UPDATE, Step.NORMALIZED]
    assert [e.figures.divergence_pct for e in told] == [34.0909, 2.2727, 2.2727]
    assert hook.get(incident_id).communication_done_at is not None


@pytest.mark.timeout(180)
def test_mail_outage_is_recorded_and_the_next_run_delivers_the_pending_update_once(
    updates_dag, divergent_psp, finance_conns
):
    smtp, slack = finance_conns["smtp"], finance_conns["slack"]
    hook = IncidentHook()
    t0 = next_slot()
    incident_id = open_stripe(hook)
    assert run(updates_dag, t0).state == "success"
    hook.record_event(incident_id, step="reprocess", outcome="cycle 10:00 re-run: success", actor="alice")

    smtp.stop()
    outage = run(updates_dag, t0 + HALF_HOUR)
    assert outage.state == "failed"  # visible in Airflow
    failed = hook.delivery(f"{incident_id}:update:{(t0 + HALF_HOUR).isoformat()}", "email")
    assert failed.status == "failed" and failed.last_error.startswith("ConnectionRefusedError")
    missed = hook.timeline(incident_id)[-1]
    assert missed.step == Step.UPDATE
    assert (
        "falhou: e-mail (ConnectionRefusedError" in missed.outcome
        and "nova tentativa na próxima execução" in missed.outcome
    )
    assert len(slack.posts) == 2  # Slack was up: it got its update

    smtp.start()
    assert run(updates_dag, t0 + 2 * HALF_HOUR).state == "success"
    assert len(smtp.messages) == 2  # exactly one delivery after the outage
    text = text_of(smtp.messages[1])
    assert "cycle 10:00 re-run: success" in text  # the pending update's step is delivered
    assert f"As atualizações previstas para {format_time(t0 + HALF_HOUR)} não foram entregues" in text
    delivered = hook.delivery(f"{incident_id}:update:{(t0 + 2 * HALF_HOUR).isoformat()}", "email")
    assert delivered.status == "sent"
    assert hook.delivery(failed.dedup_key, "email").status == "superseded"
    superseded_by = divergent_psp.execute(
        "SELECT superseded_by FROM recon.notifications WHERE id = %s", (failed.id,)
    ).fetchone()[0]
    assert superseded_by == delivered.id

    assert run(updates_dag, t0 + 2 * HALF_HOUR).state == "success"
    assert len(smtp.messages) == 2


@pytest.mark.timeout(180)
def test_rerun_of_the_failed_slot_delivers_it_once(updates_dag, divergent_psp, finance_conns):
    smtp = finance_conns["smtp"]
    hook = IncidentHook()
    t0 = next_slot()
    incident_id = open_stripe(hook)
    smtp.stop()
    assert run(updates_dag, t0).state == "failed"
    smtp.start()
    assert run(updates_dag, t0).state == "success"
    assert run(updates_dag, t0).state == "success"
    (message,) = smtp.messages
    assert "34,0909% (R$ 7,50)" in subject(message)
    row = hook.delivery(f"{incident_id}:update:{t0.isoformat()}", "email")
    assert (row.status, row.attempts) == ("sent", 2)


@pytest.mark.timeout(180)
def test_a_run_that_never_happened_is_an_event(updates_dag, divergent_psp, finance_conns):
    smtp = finance_conns["smtp"]
    hook = IncidentHook()
    t0 = next_slot()
    incident_id = open_stripe(hook)
    assert run(updates_dag, t0).state == "success"
    assert run(updates_dag, t0 + 3 * HALF_HOUR).state == "success"  # t0+30 and t0+60 never ran
    (missed,) = [e for e in hook.timeline(incident_id) if e.step == Step.UPDATE_MISSED]
    assert missed.details["slots"] == [(t0 + HALF_HOUR).isoformat(), (t0 + 2 * HALF_HOUR).isoformat()]
    assert "2 resumos ao financeiro previstos" in missed.outcome
    assert "não foram entregues" in text_of(smtp.messages[-1])


@pytest.mark.timeout(180)
def test_missing_smtp_connection_fails_the_run_and_writes_nothing(
    updates_dag, divergent_psp, finance_conns, monkeypatch
):
    hook = IncidentHook()
    open_stripe(hook)
    before = counts(divergent_psp)
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_FINANCE")
    assert run(updates_dag, next_slot()).state == "failed"
    assert counts(divergent_psp) == before
    assert finance_conns["slack"].posts == []


@pytest.mark.timeout(180)
def test_closing_report_attached_written_and_callback_notifies(
    register_dag, divergent_psp, finance_conns, tmp_path, monkeypatch
):
    # the closing report goes to the configured artifact store (it used to ignore it)
    monkeypatch.setenv("AIRFLOW__RECON__ARTIFACTS_BASE_URL", f"file://{tmp_path}/store")
    from airflow.sdk import DAG, Param

    from airflow_recon_provider.notifications.finance import FinanceNotifier
    from airflow_recon_provider.operators.incidents import ClosingReportOperator

    with DAG(
        "recon_test_closing_report",
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        params={"incident_id": Param("INCIDENT-1", type="string", pattern=r"^INCIDENT-\d+$")},
    ) as dag:
        ClosingReportOperator(
            task_id="closing_report",
            incident_id="{{ params.incident_id }}",
            on_success_callback=FinanceNotifier(
                incident_id="{{ params.incident_id }}",
                headline="Closing report of {{ params.incident_id }} attached",
            ),
        )
    register_dag(dag)

    hook = IncidentHook()
    incident_id = open_stripe(hook)
    hook.record_event(incident_id, step="reprocess", outcome="cycle 10:00 re-run: failed", actor="alice")
    divergent_psp.execute(
        "INSERT INTO recon.corrections (correction_key, incident_id, psp, transaction_id,"
        " provider_reference, transaction_type, kind, amount_minor, currency, before, after,"
        " requested_by, approved_by, run_id) VALUES"
        " ('c1', %(i)s, 'stripe', 2, 'r2', 'capture', 'amount_mismatch', 50, 'BRL', '{}', '{}', 'alice',"
        " 'bob', 'run-9'),"
        " ('c1', %(i)s, 'stripe', 3, 'r3', 'capture', 'missing_in_statement', 700, 'BRL', '{}', '{}',"
        " 'alice', 'bob', 'run-9')",
        {"i": incident_id},
    )
    statement_line(divergent_psp, "r3", 700, 31)
    hook.transition(incident_id, "mitigating", actor="alice")
    hook.transition(incident_id, "recovered", actor="recovery-sensor")
    hook.transition(incident_id, "closed", actor="alice")

    dag_run = dag.test(run_conf={"incident_id": incident_id})
    assert dag_run.state == "success"
    result = dag_run.get_task_instance("closing_report").xcom_pull(task_ids="closing_report")
    assert result["incident_id"] == incident_id
    md_link = assert_artifact_link(result["markdown"], kind="closing_report")
    html_link = assert_artifact_link(result["html"], kind="closing_report_html")
    assert (md_link["name"], html_link["name"]) == (
        f"{incident_id}-closing-report.md",
        f"{incident_id}-closing-report.html",
    )
    markdown, html = artifact_text(md_link), artifact_text(html_link)
    stored = tmp_path / "store" / "recon_test_closing_report"
    assert sorted(p.name for p in stored.rglob("*") if p.is_file()) == sorted(
        [md_link["name"], html_link["name"]]
    )
    assert markdown.startswith(f"# {incident_id} — reconciliação do billing gateway, PSP stripe")
    assert "Rascunho" not in markdown
    for section in (
        "O que divergiu",
        "O que foi feito",
        "Quem aprovou o quê",
        "Números finais",
        "Lições aprendidas",
    ):
        assert f"## {section}" in markdown and f"<h2>{section}</h2>" in html
    assert "34,0909% — R$ 7,50 divergentes em 2 transações" in markdown
    assert "| alice | bob | run-9 | 2 | R$ 7,50 | faltando no extrato do PSP, valor divergente |" in markdown
    assert "| faltando no extrato do PSP | BRL | 1 | R$ 7,00 |" in markdown
    assert "cycle 10:00 re-run: failed" in markdown and "recuperado → encerrado" in markdown
    assert "2,2727% — R$ 0,50 divergentes em 1 transação" in markdown.split("## Números finais")[1]
    assert hook.stored_closing_report(incident_id) == (markdown, html)
    attached = hook.timeline(incident_id)[-2]
    assert attached.step == Step.CLOSING_REPORT
    assert md_link["link"] in attached.outcome and attached.details["artifacts"] == [md_link, html_link]
    rows = divergent_psp.execute("SELECT kind, incident_id, psp FROM recon.artifacts ORDER BY id").fetchall()
    assert rows == [("closing_report", incident_id, "stripe"), ("closing_report_html", incident_id, "stripe")]

    # the callback told finance: the incident is closed, so it is the final update
    (message,) = finance_conns["smtp"].messages
    assert "normalizada" in subject(message)
    assert f"CLOSING REPORT OF {incident_id} ATTACHED" in text_of(message)
    assert_no_local_paths(
        result,
        attached.outcome,
        attached.details,
        text_of(message),
        message.as_string(),
        roots=[tmp_path],
        what="closing report",
    )
