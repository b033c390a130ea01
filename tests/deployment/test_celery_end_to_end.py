"""The runbook on Airflow 3.3 with the CeleryExecutor, deployed as docs/deployment.md says:
``oncall`` triggers ``billing_gateway_remediation`` (for real) through the REST API,
``finance`` approves the correction through the REST API, and the run's tasks land on two
Celery workers that share no disk with each other nor with the api-server.

Checked here: the run succeeds; only finance could answer; the correction is applied once;
both workers ran tasks; and, once the artifacts go to object storage (issue 14, parts 1
and 2), every artifact of the run is readable through the dashboard on the api-server,
nothing people or tasks read (XCom, approval text, timeline, e-mails, Slack) names a
filesystem path, and no worker kept an artifact on its own disk. Until then those checks
skip, listing what they found.
"""

from __future__ import annotations

import json
import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import celery_deployment as cd
import psycopg
import pytest

pytestmark = [pytest.mark.deployment, pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
ARTIFACT_SUFFIXES = (".csv", ".md", ".html", ".json")


def _artifacts_in_object_storage() -> bool:
    """Issue 14 part 1 has landed when the operators publish through the artifact store;
    from then on the artifact checks below are mandatory."""
    operators = REPO / "airflow_recon_provider" / "operators"
    return any("publish_artifact" in f.read_text() for f in operators.glob("*.py"))


def _dashboard_serves_artifacts() -> bool:
    """Issue 14 part 2 has landed when the dashboard app has its artifact route."""
    plugins = REPO / "airflow_recon_provider" / "plugins"
    return any(re.search(r"[\"']/artifacts/\{", f.read_text()) for f in plugins.glob("*.py"))


def _pending(what: str, found: list[str]) -> None:
    listed = "\n  ".join(found[:20]) or "(nothing found)"
    pytest.skip(f"waiting for {what}; found now:\n  {listed}")


# -- the run ---------------------------------------------------------------------------------


def test_oncall_triggers_finance_approves_and_the_run_succeeds(deployment, remediation):
    assert remediation.state == "success"
    # the requester is not a respondent of the approval ([recon] finance_approvers = finance)
    assert remediation.oncall_attempt == 403
    assert remediation.answer["responded_by"]["name"] == "finance"
    assert remediation.answer["chosen_options"] == ["Approve"]
    assert "Approve" in remediation.approval["options"]
    print(
        f"\nCeleryExecutor end to end ({deployment.isolation}): approval requested after "
        f"{remediation.timings['approval_request']:.0f} s, run succeeded after {remediation.seconds:.0f} s"
        + f"\nstart: {deployment.timings}"
        + "".join(f"\nnote: {n}" for n in deployment.notes)
    )


def test_the_correction_is_applied_once(deployment, remediation):
    scenario = deployment.scenario
    with psycopg.connect(deployment.gateway_uri, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT transaction_id, requested_by, approved_by, run_id FROM recon.corrections"
        ).fetchall()
        statuses = conn.execute(
            "SELECT DISTINCT status FROM payment_transactions WHERE id = ANY(%s)",
            (list(scenario.status_mismatch_ids),),
        ).fetchall()
        incidents = conn.execute("SELECT state FROM recon.incidents WHERE psp = 'stripe'").fetchall()
    assert sorted(r[0] for r in rows) == sorted(scenario.status_mismatch_ids)  # 12, each once
    assert {(r[1], r[2], r[3]) for r in rows} == {("oncall", "finance", remediation.run_id)}
    assert statuses == [("captured",)]
    assert incidents == [("closed",)]


def test_tasks_ran_on_both_workers(deployment, remediation):
    with psycopg.connect(deployment.metadata_uri, autocommit=True) as conn:
        tis = conn.execute(
            "SELECT dag_id, task_id, hostname, queue FROM task_instance"
            " WHERE dag_id LIKE 'billing_gateway_%' AND state = 'success' AND hostname <> ''"
        ).fetchall()
    assert tis, "no task instance ran"
    assert {q for _, _, _, q in tis} == {deployment.values["queue"]}
    if deployment.isolation == "unshare":
        # each worker is its own host (UTS namespace): its name is the task instance's hostname
        by_host: dict[str, list[str]] = {}
        for dag_id, task_id, host, _ in tis:
            by_host.setdefault(host, []).append(f"{dag_id}.{task_id}")
        assert set(by_host) == set(cd.WORKERS), by_host
    else:
        # one host name for both: each worker's own log names the workloads it executed
        for worker in deployment.workers:
            log = (deployment.component_logs / f"{worker.name}.log").read_text(errors="replace")
            assert "Executing workload in Celery" in log, f"{worker.name} executed nothing"


# -- evidence: served by the dashboard, never a path ----------------------------------------


def _forbidden(deployment) -> list[str]:
    """What a link people or tasks read must never contain: a filesystem location."""
    marks = ["file://", "/tmp/", "/var/tmp/", str(deployment.root)]
    marks += [str(p) for w in deployment.workers for p in w.private if str(p) != "/tmp"]
    return sorted(set(marks))


#: an absolute path to an artifact-like file anywhere (not the path part of a URL)
_ARTIFACT_PATH = re.compile(r"(?<![\w:/.%-])/(?:[\w.@+-]+/)+[\w.@+-]+\.(?:csv|md|html|json)\b")


def _paths_in(where: str, value: Any, marks: list[str]) -> list[str]:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    found = []
    for mark in marks:
        at = text.find(mark)
        if at >= 0:
            found.append(f"{where}: ...{text[max(0, at - 60) : at + 100]}...")
    for match in _ARTIFACT_PATH.finditer(text):
        found.append(f"{where}: ...{text[max(0, match.start() - 60) : match.end() + 40]}...")
    return found


def _mail_text(message: EmailMessage) -> str:
    parts = [str(message.get("Subject", ""))]
    for part in message.walk():
        if part.get_content_maintype() == "text" and not part.get_filename():
            parts.append(part.get_content())
    return "\n".join(parts)


def _everything_people_and_tasks_read(deployment, remediation) -> list[tuple[str, Any]]:
    finance = deployment.api(deployment.token("finance"))
    read: list[tuple[str, Any]] = [("approval request (hitlDetails)", remediation.approval)]
    for key, value in cd.xcom_values(finance).items():
        read.append((f"XCom {key}", value))
    for i, message in enumerate(deployment.stand_ins.smtp.messages):
        read.append((f"e-mail {i} ({message.get('Subject')})", _mail_text(message)))
    for i, text in enumerate(list(deployment.stand_ins.slack.posts)):
        read.append((f"Slack message {i}", text))
    with psycopg.connect(deployment.gateway_uri, autocommit=True) as conn:
        for row in conn.execute("SELECT to_jsonb(e) FROM recon.incident_events e ORDER BY id").fetchall():
            read.append(("incident timeline", row[0]))
    return read


def test_nothing_people_or_tasks_read_names_a_filesystem_path(deployment, remediation):
    marks = _forbidden(deployment)
    read = _everything_people_and_tasks_read(deployment, remediation)
    assert any(where.startswith("XCom ") for where, _ in read), "the REST API listed no XCom"
    assert any(where.startswith("e-mail ") for where, _ in read), "finance received no e-mail"
    found = [hit for where, value in read for hit in _paths_in(where, value, marks)]
    if not _artifacts_in_object_storage():
        _pending("issue 14 part 1 (the operators publishing to the artifact store)", found)
    assert not found, "a filesystem path reached people or tasks:\n" + "\n".join(found)


def test_no_worker_keeps_an_artifact_on_its_own_disk(deployment, remediation):
    kept = [
        f"{worker.name}: {path}"
        for worker in deployment.workers
        for path in worker.files_in_private_folders(deployment.isolation)
        if path.endswith(ARTIFACT_SUFFIXES) and "/logs/" not in path
    ]
    if not _artifacts_in_object_storage():
        _pending("issue 14 part 1 (the operators publishing to the artifact store)", kept)
    assert not kept, "artifacts left on a worker's own disk:\n" + "\n".join(kept)


def test_every_artifact_of_the_run_is_readable_through_the_dashboard(deployment, remediation):
    if not _artifacts_in_object_storage():
        _pending("issue 14 part 1 (the operators publishing to the artifact store)", [])
    with psycopg.connect(deployment.gateway_uri, autocommit=True) as conn:
        incident = conn.execute("SELECT incident_id FROM recon.incidents WHERE psp = 'stripe'").fetchone()[0]
        artifacts = conn.execute(
            "SELECT id, kind, name, url, size_bytes FROM recon.artifacts"
            " WHERE run_id = %s OR incident_id = %s ORDER BY id",
            (remediation.run_id, incident),
        ).fetchall()
    kinds = {kind for _, kind, _, _, _ in artifacts}
    # a real run that closed its incident: snapshot, dry run, PSP ticket, closing report, release
    assert {"snapshot", "dry_run", "psp_ticket", "closing_report"} <= kinds, artifacts
    # stored in the bucket every component reaches, not on a worker
    bucket = deployment.values["artifacts_base_url"]
    assert all(url.startswith(bucket) for _, _, _, url, _ in artifacts), artifacts
    if not _dashboard_serves_artifacts():
        _pending("issue 14 part 2 (the dashboard's /recon/artifacts/{id})", [str(a) for a in artifacts])
    finance = deployment.api(deployment.token("finance"))
    for artifact_id, kind, name, _, size in artifacts:
        answer = finance.get(f"/recon/artifacts/{artifact_id}")
        assert answer.status_code == 200, f"{kind} {name}: HTTP {answer.status_code} {answer.text[:300]}"
        if kind != "closing_report_html":  # the markdown report may be served rendered
            assert len(answer.content) == size or kind == "closing_report", (kind, name, len(answer.content))
    incidents = finance.get("/recon/incidents")
    assert incidents.status_code == 200 and incident in incidents.text
    # without a login, nothing is served
    stranger = deployment.api("not-a-token")
    anonymous = stranger.get(f"/recon/artifacts/{artifacts[0][0]}", follow_redirects=False)
    assert anonymous.status_code in (401, 403, 303, 307), anonymous.status_code
