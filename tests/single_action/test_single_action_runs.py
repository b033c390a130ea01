"""Each single-action DAG run end to end with ``dag.test()`` on the seeded divergence of
``remediation_dag_support`` (real PostgreSQL, the local PSP API, billing core, SMTP server
and Slack stand-in): the reprocess with its child runs executed by the test, pause then
resume, rollback then tag in local mode, and the data correction approved by finance,
rejected, approved by the requester (refused), and as a dry run."""

from __future__ import annotations

import csv
import io
import json

import pytest
from artifact_checks import artifact_text, assert_artifact_link, assert_no_local_paths
from remediation_dag_support import (
    WATCHED_TABLES,
    WINDOW_END,
    WINDOW_START,
    checksum,
    dag_runs_of,
    states,
    xcom,
)

from airflow_recon_provider.devtools.demo_airflow import HitlAnswerer

pytestmark = [pytest.mark.dags, pytest.mark.integration, pytest.mark.timeout(300)]

REQUESTER = "dag_test"  # what dag.test() records as the triggering user (AIRFLOW3-NOTES)
APPROVER = "finance.bia"
CONF = {"psp": "stripe", "window_start": WINDOW_START, "window_end": WINDOW_END}
#: payment data and the provider's controls and audit: what a refused correction leaves alone
PAYMENT_TABLES = (
    "payment_intents",
    "payment_transactions",
    "psp_statement_lines",
    "payment_reconciliation_logs",
    "ledger.transactions",
    "recon.corrections",
    "recon.controls",
    "recon.control_events",
)


def timeline(db, incident_id: str) -> list[tuple]:
    return db.execute(
        "SELECT step, outcome, actor, run_id, divergent_amount_minor FROM recon.incident_events"
        " WHERE incident_id = %s ORDER BY id",
        (incident_id,),
    ).fetchall()


def branch_ran(chosen: str, skipped: str, *, leased: bool = False) -> dict[str, str]:
    """The task states of a two-action DAG's run that ran ``chosen`` (``leased``: the DAG gives
    the PSP's remediation lease back in its ``release_lease`` teardown)."""
    ran = {"scope": "success", "choose_action": "success", chosen: "success", skipped: "skipped"}
    return {**ran, "release_lease": "success"} if leased else ran


def incidents(db) -> list[tuple]:
    return db.execute("SELECT incident_id, psp, state, opened_by FROM recon.incidents ORDER BY id").fetchall()


# -- billing_gateway_reprocess --------------------------------------------------------------------


def test_reprocess_records_on_the_psps_open_incident(
    reprocess_dag,
    register_dag,
    scenario,
    psp_api,
    core_api,
    workdir,
    children_run_by_the_test,
    db,
    open_incident,
):
    incident_id = open_incident()
    dag_run = reprocess_dag.test(run_conf={**CONF, "reason": "on-call: re-run 11:00-14:00 for stripe"})
    task_states = states(dag_run)
    assert dag_run.state == "success", task_states
    assert task_states == {"scope": "success", "reprocess": "success", "release_lease": "success"}

    scope = xcom(dag_run, "scope")
    assert (scope["incident_action"], scope["incident_id"], scope["dry_run"]) == (
        "attached",
        incident_id,
        False,
    )
    reprocess = xcom(dag_run, "reprocess")
    assert [c["state"] for c in reprocess["cycles"]] == ["success"] * 3
    assert len(children_run_by_the_test) == 3 and core_api.requests == []
    assert {r["from"] for r in psp_api.requests if r["psp"] == "stripe"} == {
        "2026-11-20T11:00:00Z",
        "2026-11-20T12:00:00Z",
        "2026-11-20T13:00:00Z",
    }
    # the failed cycles 12:00 and 13:00 now have a successful latest cycle
    latest = db.execute(
        """SELECT DISTINCT ON (cycle_start) cycle_start, status FROM payment_reconciliation_logs
            WHERE psp = 'stripe' AND cycle_start >= %s AND cycle_start < %s
            ORDER BY cycle_start, id DESC""",
        (WINDOW_START, WINDOW_END),
    ).fetchall()
    assert [status for _, status in latest] == ["success"] * 3

    # on the open incident (no second one), with who, which run and the divergence then
    assert [row[0] for row in incidents(db)] == [incident_id]
    events = {e[0]: e for e in timeline(db, incident_id)}
    assert events["investigation.scope"][2:4] == (REQUESTER, dag_run.run_id)
    reprocessed = events["mitigation.reprocess"]
    assert reprocessed[1].startswith("3 de 3 ciclos") and reprocessed[2:4] == (REQUESTER, dag_run.run_id)
    assert reprocessed[4] is not None


def test_reprocess_without_an_incident_opens_none(
    reprocess_dag, register_dag, scenario, psp_api, core_api, workdir, children_run_by_the_test, db
):
    conf = {**CONF, "window_start": "2026-11-20T13:00:00Z"}  # one cycle
    dag_run = reprocess_dag.test(run_conf=conf)
    assert dag_run.state == "success", states(dag_run)
    scope = xcom(dag_run, "scope")
    assert (scope["incident_action"], scope["incident_id"]) == ("none", None)
    assert [c["state"] for c in xcom(dag_run, "reprocess")["cycles"]] == ["success"]
    assert len(children_run_by_the_test) == 1
    assert incidents(db) == []
    assert db.execute("SELECT count(*) FROM recon.incident_events").fetchone() == (0,)


# -- billing_gateway_reconciliation_control ---------------------------------------------------------


def test_pause_then_resume(control_dag, register_dag, scenario, finance_conns, workdir, db):
    eta = "2026-11-20T18:00:00Z"
    paused = control_dag.test(
        run_conf={**CONF, "action": "pause", "reason": "PSP statement feed broken", "eta_resumption": eta}
    )
    assert states(paused) == branch_ran("pause_reconciliation", "resume_reconciliation")
    scope = xcom(paused, "scope")
    incident_id = scope["incident_id"]
    assert scope["incident_action"] == "opened" and incident_id.startswith("INCIDENT-")
    assert incidents(db) == [(incident_id, "stripe", "open", REQUESTER)]
    control = db.execute("SELECT state, actor, reason, incident_id FROM recon.controls WHERE psp = 'stripe'")
    assert control.fetchone() == ("paused", REQUESTER, "PSP statement feed broken", incident_id)
    slack = finance_conns["slack"].texts
    assert any("reconciliação de stripe pausada por dag_test" in text for text in slack), slack
    subjects = [m["Subject"] for m in finance_conns["smtp"].messages]
    assert len(subjects) == 1 and "reconciliação de stripe pausada" in subjects[0], subjects
    # the estimated resumption of the form: on the incident, in finance's notice
    (kept_eta,) = db.execute(
        "SELECT eta_resumption FROM recon.incidents WHERE incident_id = %s", (incident_id,)
    )
    assert kept_eta[0].isoformat() == "2026-11-20T18:00:00+00:00"
    notice = finance_conns["smtp"].messages[0]
    text = "".join(
        part.get_payload(decode=True).decode()
        for part in notice.walk()
        if part.get_content_type() == "text/plain"
    )
    assert "18:00" in text, text

    resumed = control_dag.test(run_conf={**CONF, "action": "resume", "reason": "PSP feed fixed"})
    assert states(resumed) == branch_ran("resume_reconciliation", "pause_reconciliation")
    scope = xcom(resumed, "scope")
    assert (scope["incident_action"], scope["incident_id"]) == ("attached", incident_id)
    history = db.execute(
        "SELECT state, actor, reason, incident_id, run_id FROM recon.control_events WHERE psp = 'stripe'"
        " ORDER BY id"
    ).fetchall()
    assert history == [
        ("paused", REQUESTER, "PSP statement feed broken", incident_id, paused.run_id),
        ("active", REQUESTER, "PSP feed fixed", incident_id, resumed.run_id),
    ]
    assert db.execute("SELECT state FROM recon.controls WHERE psp = 'stripe'").fetchone() == ("active",)
    slack = finance_conns["slack"].texts
    assert any("reconciliação de stripe retomada por dag_test" in text for text in slack), slack
    assert len(finance_conns["smtp"].messages) == 1  # a resume sends no containment notice

    # both on the incident, which a single action does not close
    steps = [(e[0], e[3]) for e in timeline(db, incident_id)]
    assert ("containment.pause", paused.run_id) in steps and ("closure.resume", resumed.run_id) in steps
    assert incidents(db) == [(incident_id, "stripe", "open", REQUESTER)]


def test_resume_without_an_incident_opens_none(control_dag, register_dag, scenario, finance_conns, db):
    dag_run = control_dag.test(run_conf={**CONF, "action": "resume"})
    assert dag_run.state == "success", states(dag_run)
    assert xcom(dag_run, "scope")["incident_action"] == "none"
    assert xcom(dag_run, "resume_reconciliation")["outcome"] == "already_active"
    assert incidents(db) == []
    assert finance_conns["slack"].posts == []  # nothing changed, nobody told


# -- billing_gateway_release_rollback ---------------------------------------------------------------


def test_rollback_then_tag_in_local_mode(release_dag, register_dag, scenario, workdir, db, open_incident):
    rolled_back = release_dag.test(run_conf={**CONF, "action": "rollback"})
    assert states(rolled_back) == branch_ran("rollback_release", "tag_release", leased=True)
    assert xcom(rolled_back, "scope")["incident_action"] == "none"
    assert incidents(db) == []  # a release action never opens an incident
    rollback = xcom(rolled_back, "rollback_release")
    assert (rollback["action"], rollback["mode"]) == ("rollback", "local")
    # the release record: in the artifact store and recon.artifacts, linked from XCom
    record = json.loads(artifact_text(assert_artifact_link(rollback["record"], kind="release_record")))
    assert (record["action"], record["exit_code"], record["incident_id"]) == ("rollback", 0, None)
    assert_no_local_paths(rollback, roots=[workdir["artifacts"].parent], what="rollback")

    incident_id = open_incident()
    tagged = release_dag.test(run_conf={**CONF, "action": "tag"})
    assert states(tagged)["tag_release"] == "success" and states(tagged)["rollback_release"] == "skipped"
    assert xcom(tagged, "scope")["incident_id"] == incident_id

    actions = json.loads(workdir["release"].read_text())
    assert [(a["action"], a["service"], a["env"]) for a in actions] == [
        ("rollback", "billing-gateway-worker", "prod"),
        ("tag", "billing-gateway-worker", "prod"),
    ]
    assert actions[1].get("notes") in (None, "reconciliation incident")
    events = timeline(db, incident_id)
    tag_events = [e for e in events if e[0] == "closure.tag_release"]
    assert len(tag_events) == 1 and tag_events[0][1].startswith("tag de billing-gateway-worker em prod feito")
    assert tag_events[0][2:4] == (REQUESTER, tagged.run_id)
    tag = xcom(tagged, "tag_release")
    assert (
        f"registro da release release_tag_billing-gateway-worker.json ({tag['record']['link']})"
        in tag_events[0][1]
    )
    assert_no_local_paths(tag, [e[1] for e in events], roots=[workdir["artifacts"].parent], what="tag")
    assert "mitigation.rollback" not in [e[0] for e in events]  # skipped by the branch: no event


# -- billing_gateway_data_correction ----------------------------------------------------------------


def test_correction_approved_by_finance(correction_dag, register_dag, scenario, finance_conns, workdir, db):
    answerer = HitlAnswerer(correction_dag.dag_id, chosen="Approve", user=APPROVER)
    answerer.start()
    dag_run = correction_dag.test(run_conf={**CONF, "dry_run": False, "reason": "finance ticket FIN-88"})
    answerer.finish()
    assert states(dag_run) == {
        "scope": "success",
        "correct_transactions": "success",
        "release_lease": "success",
    }

    scope = xcom(dag_run, "scope")
    incident_id = scope["incident_id"]
    assert scope["incident_action"] == "opened"  # it changes payment data: on an incident
    # finance saw the dry run: counts, the artifact, who asked
    assert answerer.request["task_id"] == "correct_transactions"
    assert "12 transações" in answerer.request["subject"]
    body = answerer.request["body"]
    assert "- CSV da simulação (abra-o antes de responder): [correction\\_" in body, body
    assert "- pedida por: dag\\_test" in body, body
    assert f"- incidente: {incident_id}" in body, body

    correction = xcom(dag_run, "correct_transactions")
    assert correction["outcome"] == "applied" and correction["approved_by"] == APPROVER
    assert correction["result"]["applied"] == 12
    dry_csv = assert_artifact_link(correction["dry_run"]["artifact_record"], kind="dry_run")
    assert f"]({dry_csv['link']})" in body  # finance opens it from the approval text
    assert len(list(csv.DictReader(io.StringIO(artifact_text(dry_csv), newline="")))) == 12
    assert_no_local_paths(correction, body, roots=[workdir["artifacts"].parent], what="correction")
    statuses = db.execute(
        "SELECT DISTINCT status FROM payment_transactions WHERE id = ANY(%s)",
        (list(scenario.status_mismatch_ids),),
    ).fetchall()
    assert statuses == [("captured",)]
    audit = db.execute(
        "SELECT transaction_id, requested_by, approved_by, run_id, incident_id, before->>'status',"
        " after->>'status' FROM recon.corrections ORDER BY transaction_id"
    ).fetchall()
    assert audit == [
        (tid, REQUESTER, APPROVER, dag_run.run_id, incident_id, "authorized", "captured")
        for tid in sorted(scenario.status_mismatch_ids)
    ]
    notes = db.execute(
        "SELECT count(*) FROM payment_reconciliation_logs, regexp_split_to_table(notes, E'\\n') AS line"
        " WHERE psp = 'stripe' AND line LIKE 'data correction %%'"
    ).fetchone()
    assert notes == (12,)
    outcomes = [(e[1], e[2]) for e in timeline(db, incident_id) if e[0] == "mitigation.data_correction"]
    assert outcomes[0] == ("aprovação solicitada ao financeiro", REQUESTER)
    assert ("correções aplicadas", APPROVER) in outcomes
    assert outcomes[-1] == (f"12 correções aplicadas, aprovadas por {APPROVER}", REQUESTER)


@pytest.mark.parametrize(
    ("answer", "user", "run_state", "outcome"),
    [
        ("Reject", APPROVER, "success", "recusada pelo financeiro: nada aplicado"),
        ("Approve", REQUESTER, "failed", "aprovação recusada: a resposta não veio de um aprovador permitido"),
    ],
    ids=["rejected-by-finance", "approved-by-the-requester"],
)
def test_correction_not_approved_changes_nothing(
    correction_dag, register_dag, scenario, finance_conns, workdir, db, answer, user, run_state, outcome
):
    before = checksum(db, PAYMENT_TABLES)
    answerer = HitlAnswerer(correction_dag.dag_id, chosen=answer, user=user)
    answerer.start()
    dag_run = correction_dag.test(run_conf={**CONF, "dry_run": False})
    answerer.finish()
    assert dag_run.state == run_state, states(dag_run)
    assert states(dag_run)["correct_transactions"] == run_state

    assert checksum(db, PAYMENT_TABLES) == before
    assert db.execute("SELECT count(*) FROM recon.corrections").fetchone() == (0,)
    # the request and the decision are on the incident the run opened
    incident_id = xcom(dag_run, "scope")["incident_id"]
    outcomes = [(e[1], e[2]) for e in timeline(db, incident_id) if e[0] == "mitigation.data_correction"]
    assert outcomes[0] == ("aprovação solicitada ao financeiro", REQUESTER)
    assert (outcome, user) in outcomes
    if run_state == "success":
        assert xcom(dag_run, "correct_transactions")["outcome"] == "rejected"


def test_correction_is_a_dry_run_by_default(
    correction_dag, register_dag, scenario, finance_conns, workdir, db
):
    before = checksum(db, WATCHED_TABLES)
    runs_before = dag_runs_of(correction_dag.dag_id)
    dag_run = correction_dag.test(run_conf=CONF)  # the form's dry_run defaults to true
    assert states(dag_run) == {
        "scope": "success",
        "correct_transactions": "success",
        "release_lease": "success",
    }
    scope = xcom(dag_run, "scope")
    assert (scope["dry_run"], scope["incident_action"], scope["incident_id"]) == (True, "would_open", None)
    correction = xcom(dag_run, "correct_transactions")
    assert correction["outcome"] == "dry_run" and correction["dry_run"]["proposal_count"] == 12
    dry_csv = assert_artifact_link(correction["dry_run"]["artifact_record"], kind="dry_run")
    assert len(artifact_text(dry_csv).splitlines()) == 1 + 12
    # stored under RECON_ARTIFACTS_DIR (the file:// base), never named in XCom
    assert list(workdir["artifacts"].rglob(dry_csv["name"]))
    assert_no_local_paths(correction, roots=[workdir["artifacts"].parent], what="dry run")
    # nothing asked, applied, opened or sent
    assert checksum(db, WATCHED_TABLES) == before
    assert len(dag_runs_of(correction_dag.dag_id)) == len(runs_before) + 1
    assert finance_conns["slack"].posts == [] and finance_conns["smtp"].messages == []
