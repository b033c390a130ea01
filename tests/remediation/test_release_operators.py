"""RollbackDeployOperator / TagReleaseOperator (runbook Mitigação 3 and Encerramento).

There is no Kubernetes cluster here: the pod is asserted by building the
``KubernetesPodOperator`` and its ``V1Pod`` (argv, namespace, image, connection), and a
missing cluster connection is checked to fail clearly. The local mode really runs the
repository's demo stand-in ``scripts/finops/rollback_and_tag.py`` in a subprocess, inside
a ``dag.test()`` run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from artifact_checks import artifact_text, assert_artifact_link, assert_no_local_paths

from airflow_recon_provider.operators.release import RollbackDeployOperator, TagReleaseOperator, parse_bool
from airflow_recon_provider.reconciliation.errors import ConnectionMissingError, ReleaseCommandError

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "finops" / "rollback_and_tag.py"


def container_of(operator):
    pod = operator.build_pod_operator().build_pod_request_obj(dry_run=True)
    (container,) = pod.spec.containers
    return pod, container


def test_rollback_pod_runs_the_runbook_command_in_billing_gateway():
    op = RollbackDeployOperator(
        task_id="rollback_worker", after_release=True, image="registry.internal/finops:1.4"
    )
    kpo = op.build_pod_operator()
    assert kpo.kubernetes_conn_id == "kubernetes_billing"
    assert kpo.namespace == "billing-gateway"
    assert kpo.deferrable is False and kpo.get_logs is True
    pod, container = container_of(op)
    assert container.command + container.args == [
        "scripts/finops/rollback_and_tag.py",
        "rollback",
        "--service",
        "billing-gateway-worker",
        "--env",
        "prod",
    ]
    assert container.image == "registry.internal/finops:1.4"
    assert pod.metadata.namespace == "billing-gateway"
    assert pod.metadata.name.startswith("rollback-billing-gateway-worker")
    assert pod.metadata.labels["recon-action"] == "rollback"
    assert pod.spec.restart_policy == "Never"


def test_tag_pod_carries_the_notes_and_site_settings():
    op = TagReleaseOperator(
        task_id="tag_release",
        namespace="payments-ops",
        image="registry.internal/finops:2.0",
        kubernetes_conn_id="kubernetes_ops",
        script_path="/opt/finops/rollback_and_tag.py",
        pod_kwargs={"service_account_name": "finops-release"},
    )
    kpo = op.build_pod_operator()
    assert kpo.kubernetes_conn_id == "kubernetes_ops"
    pod, container = container_of(op)
    assert container.command == ["/opt/finops/rollback_and_tag.py"]
    assert container.args == [
        "tag",
        "--service",
        "billing-gateway-worker",
        "--env",
        "prod",
        "--notes",
        "reconciliation incident",
    ]
    assert pod.metadata.namespace == "payments-ops"
    assert pod.spec.service_account_name == "finops-release"


def test_kubernetes_mode_without_the_cluster_connection_fails_clearly(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_KUBERNETES_BILLING", raising=False)
    op = TagReleaseOperator(task_id="tag_release")
    with pytest.raises(ConnectionMissingError, match=r"'kubernetes_billing' is not defined.*mode='local'"):
        op.execute({})


def test_bad_input_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="service"):
        RollbackDeployOperator(task_id="r", service="worker; rm -rf /", after_release=True).script_argv()
    with pytest.raises(ValueError, match="mode"):
        TagReleaseOperator(task_id="t", mode="ssh").execute({})
    with pytest.raises(ValueError, match="notes"):
        TagReleaseOperator(task_id="t", notes="two\nlines").script_argv()
    with pytest.raises(ValueError, match="after_release must be true or false"):
        parse_bool("maybe", name="after_release")
    assert parse_bool("False", name="x") is False and parse_bool("true", name="x") is True


def test_local_mode_reports_a_failing_script(tmp_path):
    failing = tmp_path / "rollback_and_tag.py"
    failing.write_text("import sys\nprint('cannot reach deploy API', file=sys.stderr)\nsys.exit(3)\n")
    op = RollbackDeployOperator(task_id="r", mode="local", after_release=True, script_path=str(failing))
    with pytest.raises(ReleaseCommandError, match="exited with status 3: cannot reach deploy API"):
        op.execute({})
    missing = TagReleaseOperator(task_id="t", mode="local", script_path=str(tmp_path / "nope.py"))
    with pytest.raises(ReleaseCommandError, match="not found"):
        missing.execute({})


def test_demo_script_refuses_bad_arguments():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "rollback", "--env", "prod"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "--service" in result.stderr


@pytest.fixture
def release_dag(register_dag):
    from airflow.sdk import DAG, Param

    with DAG(
        dag_id="test_release_local",
        schedule=None,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        params={"after_release": Param(False, type="boolean"), "record": Param("", type="string")},
    ) as dag:
        rollback = RollbackDeployOperator(
            task_id="rollback_worker",
            mode="local",
            after_release="{{ params.after_release }}",
            record_path="{{ params.record }}",
        )
        tag = TagReleaseOperator(
            task_id="tag_release",
            mode="local",
            notes="reconciliation incident INCIDENT-472",
            record_path="{{ params.record }}",
            trigger_rule="none_failed",
        )
        rollback >> tag
    return register_dag(dag)


@pytest.fixture
def store(db, airflow_conns, monkeypatch, tmp_path):
    """The artifact store (RECON_ARTIFACTS_DIR) and recon.artifacts of the release records."""
    monkeypatch.setenv("RECON_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    return db


@pytest.mark.dags
@pytest.mark.integration
@pytest.mark.timeout(180)
def test_local_mode_really_runs_the_demo_script(release_dag, store, tmp_path):
    record = tmp_path / "release-actions.json"
    dag_run = release_dag.test(
        logical_date=datetime(2026, 11, 21, 7, tzinfo=UTC),
        run_conf={"after_release": True, "record": str(record)},
    )
    assert dag_run.state == "success"
    entries = json.loads(record.read_text())
    assert [(e["action"], e["service"], e["env"], e["notes"], e["demo"]) for e in entries] == [
        ("rollback", "billing-gateway-worker", "prod", "", True),
        ("tag", "billing-gateway-worker", "prod", "reconciliation incident INCIDENT-472", True),
    ]
    result = dag_run.get_task_instance("rollback_worker").xcom_pull(task_ids="rollback_worker")
    assert result["mode"] == "local" and result["exit_code"] == 0
    assert result["argv"] == [
        "scripts/finops/rollback_and_tag.py",
        "rollback",
        "--service",
        "billing-gateway-worker",
        "--env",
        "prod",
    ]
    assert (
        result["output"]["would_run"] == "rollback of billing-gateway-worker in prod to its previous release"
    )
    # the release record: written once to the artifact store, linked from XCom, no path
    linked = assert_artifact_link(result["record"], kind="release_record")
    assert linked["name"] == "release_rollback_billing-gateway-worker.json"
    document = json.loads(artifact_text(linked))
    assert (document["action"], document["exit_code"], document["run_id"]) == ("rollback", 0, dag_run.run_id)
    assert document["output"]["would_run"] == result["output"]["would_run"]
    tag = dag_run.get_task_instance("tag_release").xcom_pull(task_ids="tag_release")
    tagged = json.loads(artifact_text(assert_artifact_link(tag["record"], kind="release_record")))
    assert tagged["notes"] == "reconciliation incident INCIDENT-472"
    assert_no_local_paths(result, tag, document, tagged, roots=[tmp_path], what="release XCom")
    names = [r[0] for r in store.execute("SELECT name FROM recon.artifacts ORDER BY id")]
    assert names == [
        "release_rollback_billing-gateway-worker.json",
        "release_tag_billing-gateway-worker.json",
    ]


@pytest.mark.dags
@pytest.mark.integration
@pytest.mark.timeout(180)
def test_rollback_is_skipped_unless_the_break_followed_a_release(release_dag, store, tmp_path, capsys):
    record = tmp_path / "release-actions.json"
    dag_run = release_dag.test(
        logical_date=datetime(2026, 11, 21, 8, tzinfo=UTC),
        run_conf={"after_release": False, "record": str(record)},
    )
    assert dag_run.state == "success"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {"rollback_worker": "skipped", "tag_release": "success"}
    assert [e["action"] for e in json.loads(record.read_text())] == ["tag"]
    assert [r[0] for r in store.execute("SELECT name FROM recon.artifacts")] == [
        "release_tag_billing-gateway-worker.json"
    ]
    assert "Rollback of billing-gateway-worker in prod skipped" in capsys.readouterr().out


def test_operator_modules_parse_without_heavy_imports():
    code = (
        "import sys\n"
        "import airflow_recon_provider.operators.release, airflow_recon_provider.operators.reprocess\n"
        "import airflow_recon_provider.operators.psp_ticket\n"
        "heavy = [m for m in ('airflow.providers.cncf.kubernetes.operators.pod', 'kubernetes',"
        " 'airflow.providers.http.hooks.http') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_release_record_that_cannot_be_stored_never_repeats_the_action(tmp_path, monkeypatch):
    """The rollback ran: a store that cannot take its record must not fail the task (a retry
    would roll back one release further); the step says the record is missing."""
    from types import SimpleNamespace

    record = tmp_path / "release-actions.json"
    op = RollbackDeployOperator(
        task_id="rollback_worker",
        mode="local",
        after_release=True,
        record_path=str(record),
        artifacts_dir="nosuchscheme://bucket/prefix",
    )
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="rollback_worker", map_index=-1, try_number=1)
    result = op.execute({"ti": ti, "run_id": "r"})
    assert [e["action"] for e in json.loads(record.read_text())] == ["rollback"]  # done once
    assert result["record"] is None and "nosuchscheme" in result["record_error"]
    assert result["exit_code"] == 0
