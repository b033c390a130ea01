"""The CeleryExecutor deployment of the end-to-end test (see celery_deployment.py), started
once for this folder's tests, and the remediation run they check: triggered through the
REST API as ``oncall``, approved through the REST API as ``finance``.

Everything is bounded: each wait has a deadline that fails with the components' log tails,
and the tests carry pytest-timeout markers. Needs the ``test`` extra's Celery
(``celery>=5.6,<5.7`` and the celery provider) and Redis (127.0.0.1:6379, or a
``redis-server`` binary to start one); skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # celery_deployment is imported by name (conftest modules are not)
    sys.path.insert(0, str(HERE))

import celery_deployment as cd  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "deployment: starts Airflow with the CeleryExecutor (api-server, scheduler, dag-processor, "
        "triggerer, two Celery workers sharing no disk) and Redis",
    )


def _libpq_to_uri(url: str, dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    user = info.get("user") or "postgres"
    password = f":{quote(info['password'], safe='')}" if info.get("password") else ""
    host = info.get("host") or "127.0.0.1"
    port = info.get("port") or "5432"
    return f"postgresql://{user}{password}@{host}:{port}/{dbname}"


def _deployment_root() -> Path:
    """Not under /tmp: the workers get an empty tmpfs over /tmp (nor under pytest's basetemp,
    which another session may prune)."""
    for parent in ("/var/tmp", None):
        if parent is None or os.access(parent, os.W_OK):
            return Path(tempfile.mkdtemp(prefix="recon-celery-e2e-", dir=parent))
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def deployment(pg_url: str):
    pytest.importorskip(
        "airflow.providers.celery", reason="the celery provider (test extra) is not installed"
    )
    pytest.importorskip("celery", reason="celery (test extra) is not installed")
    if not cd.redis_answers(6379) and shutil.which("redis-server") is None:
        pytest.skip("no Redis on 127.0.0.1:6379 and no redis-server to start one")
    from rich.console import Console

    from airflow_recon_provider.devtools.demo import DemoDatabases, prepare_scenario
    from airflow_recon_provider.devtools.demo_scenario import DEMO_PSPS
    from airflow_recon_provider.devtools.stand_ins import DemoPspApi, StandIns
    from airflow_recon_provider.schema import create_runbook_tables

    root = _deployment_root()
    clock = time.monotonic()
    timings: dict[str, float] = {}

    def lap(stage: str) -> None:
        nonlocal clock
        timings[stage] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()

    tag = uuid.uuid4().hex[:8]
    names = {part: f"recon_e2e_{tag}_{part}" for part in ("airflow", "gateway", "ledger")}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for name in names.values():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    uris = {part: _libpq_to_uri(pg_url, name) for part, name in names.items()}
    # RECON_E2E_ISOLATION=directories tries the fallback where unshare is permitted
    wanted = os.environ.get("RECON_E2E_ISOLATION", "unshare")
    isolation = "unshare" if wanted == "unshare" and cd.unshare_permitted() else "directories"
    stand_ins = None
    deployment = None
    stack = contextlib.ExitStack()
    try:
        redis_port, redis_process = stack.enter_context(cd.redis_broker(root))
        # the site's own runbook tables, then the provider's schema with its real command
        with (
            psycopg.connect(uris["gateway"], autocommit=True) as gconn,
            psycopg.connect(uris["ledger"], autocommit=True) as lconn,
        ):
            create_runbook_tables(gconn, ledger=False)
            create_runbook_tables(lconn, gateway=False)
        migrate_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RECON_"))},
            "AIRFLOW_HOME": str(root / "airflow-home"),
            "AIRFLOW_CONN_BILLING_GATEWAY_DB": uris["gateway"],
        }
        _run(cd.PROVIDER_SETUP_COMMAND, migrate_env)
        # the demo's divergent scenario (its migrate finds nothing left to apply)
        dbs = DemoDatabases(None, uris["gateway"], uris["ledger"], uris["airflow"])
        scenario = prepare_scenario(dbs, Console(quiet=True), rows_per_psp=1200, seed=7)
        with psycopg.connect(uris["gateway"], autocommit=True) as gconn:
            stand_ins = StandIns.start(DemoPspApi.snapshot(gconn))
        connections = stand_ins.connections(DEMO_PSPS)
        lap("databases, recon schema, scenario, stand-ins")
        store = _artifact_store()
        if store == "s3":
            # the bucket: a local S3-compatible server (moto) every component reaches
            from airflow_recon_provider.devtools.local_s3 import LocalS3Server

            s3 = stack.enter_context(LocalS3Server())
            s3.create_bucket(f"recon-e2e-{tag}")
            bucket = {
                "artifacts_base_url": f"s3://recon-e2e-{tag}/prod",
                "artifacts_conn_id": "aws_recon_artifacts",
            }
            connections["AIRFLOW_CONN_AWS_RECON_ARTIFACTS"] = s3.airflow_connection()
        else:
            # the bucket: a directory every component reaches, outside the workers' private folders
            (root / "bucket").mkdir()
            bucket = {"artifacts_base_url": (root / "bucket").as_uri(), "artifacts_conn_id": ""}
        values = {
            "api_host": "127.0.0.1",
            "api_port": str(cd.free_port()),
            "metadata_db": uris["airflow"].removeprefix("postgresql://"),
            "redis_host": "127.0.0.1",
            "redis_port": str(redis_port),
            "redis_db": str(int(tag, 16) % 15 + 1),
            # a queue of this run only: another run on the same Redis never takes its tasks
            "queue": f"recon-e2e-{tag}",
            **bucket,
        }
        env = cd.build_env(
            root=root,
            values=values,
            gateway_uri=uris["gateway"],
            ledger_uri=uris["ledger"],
            metadata_uri=uris["airflow"],
            connections=connections,
        )
        deployment = cd.CeleryDeployment(
            root=root,
            env=env,
            values=values,
            isolation=isolation,
            workers=[_worker(root, name, isolation) for name in cd.WORKERS],
            stand_ins=stand_ins,
            gateway_uri=uris["gateway"],
            metadata_uri=uris["airflow"],
            scenario=scenario,
            redis=redis_process,
            notes=[f"artifacts in {values['artifacts_base_url']}"],
        )
        if isolation != "unshare":
            why = "as asked (RECON_E2E_ISOLATION)" if wanted != "unshare" else "unshare is not permitted here"
            deployment.notes.append(f"{why}: the workers got distinct directories, not private mounts")
        deployment.timings = timings
        lap("redis, bucket, environment")
        deployment.run_setup()
        lap("setup commands")
        deployment.start_components()
        deployment.wait_ready()
        lap("components ready")
        yield deployment
    finally:
        killed = deployment.stop() if deployment is not None else []
        if deployment is None and stand_ins is not None:
            stand_ins.stop()
        stack.close()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            for name in names.values():
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if os.environ.get("RECON_KEEP_DEPLOYMENT") != "1":
            shutil.rmtree(root, ignore_errors=True)
        if killed:
            print(f"deployment: SIGKILL needed for {killed}", file=sys.stderr)


def _artifact_store() -> str:
    """``s3`` (moto in server mode as the bucket: the production shape) when the test extra's
    S3 packages are installed, else ``file``; ``RECON_E2E_STORE=file|s3`` chooses."""
    chosen = os.environ.get("RECON_E2E_STORE")
    if chosen in ("file", "s3"):
        return chosen
    import importlib.util

    needed = ("moto", "s3fs", "airflow.providers.amazon")
    return "s3" if all(importlib.util.find_spec(m) is not None for m in needed) else "file"


def _worker(root: Path, name: str, isolation: str) -> cd.Worker:
    if isolation == "unshare":
        # the same paths as on the api-server's host, but a private tmpfs each; /tmp too,
        # unless the checkout or its .venv lives there (a CI clone under /tmp): a tmpfs over it
        # would hide the worker's own `airflow` (the worker's TMPDIR is private either way)
        private = (root / "airflow-home", root / "artifacts", root / "tmp")
        code = (Path(sys.prefix).resolve(), Path(__file__).resolve())
        if not any(p.is_relative_to("/tmp") for p in code):
            private += (Path("/tmp"),)
    else:
        private = (root / name / "airflow-home", root / name / "artifacts", root / name / "tmp")
    return cd.Worker(name=name, private=private, log_folder=root / "worker-logs" / name)


def _run(command: str, env: dict[str, str]) -> None:
    import shlex
    import subprocess

    argv = shlex.split(command)
    argv[0] = cd._venv_bin(argv[0])
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"`{command}` exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )


@dataclass
class RemediationRun:
    run_id: str
    state: str
    seconds: float
    #: the approval request as finance read it (GET hitlDetails), and finance's answer
    approval: dict[str, Any]
    answer: dict[str, Any]
    #: what oncall got when trying to approve (403: not a respondent)
    oncall_attempt: int
    timings: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def remediation(deployment: cd.CeleryDeployment) -> RemediationRun:
    """``billing_gateway_remediation`` for stripe's divergent window, for real (not a dry
    run): triggered by ``oncall``, approved by ``finance``, both through the REST API."""
    d = deployment
    started = time.monotonic()
    oncall = d.api(d.token("oncall"))
    finance = d.api(d.token("finance"))
    s = d.scenario
    conf = {
        "psp": "stripe",
        "window_start": s.window_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "window_end": s.window_end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dry_run": False,
        "reason": "end-to-end test: captures missing in the report",
    }
    created = oncall.post(
        f"/api/v2/dags/{cd.REMEDIATION_DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf}
    )
    assert created.status_code == 200, created.text
    run_id = created.json()["dag_run_id"]
    run_path = f"/api/v2/dags/{cd.REMEDIATION_DAG_ID}/dagRuns/{quote(run_id, safe='')}"
    approval_path = f"{run_path}/taskInstances/{quote(cd.APPROVAL_TASK_ID, safe='')}"

    def run_state() -> str:
        answer = oncall.get(run_path)
        answer.raise_for_status()
        return answer.json()["state"]

    def failed_tasks() -> str:
        tis = oncall.get(f"{run_path}/taskInstances", params={"limit": 200}).json().get("task_instances", [])
        return ", ".join(
            f"{t['task_id']}={t['state']}" for t in tis if t["state"] in ("failed", "upstream_failed")
        )

    def approval_waiting() -> bool:
        state = run_state()
        if state != "running" and state != "queued":
            raise AssertionError(
                f"the run ended {state} before asking for the approval ({failed_tasks()})\n"
                f"{d.task_logs_tail(run_id)}\n{d.logs_tail()}"
            )
        ti = oncall.get(approval_path)
        return ti.status_code == 200 and ti.json()["state"] == "awaiting_input"

    d.wait_for("finance's approval request (mitigate.correct_transactions awaiting input)",
               approval_waiting, cd.APPROVAL_REQUEST_SECONDS)  # fmt: skip
    waited_for_request = time.monotonic() - started
    detail = finance.get(f"{approval_path}/-1/hitlDetails")
    assert detail.status_code == 200, detail.text
    approval = detail.json()
    # the requester is not a respondent: Airflow refuses before anything is recorded
    attempt = oncall.patch(f"{approval_path}/-1/hitlDetails", json={"chosen_options": ["Approve"]})
    answer = finance.patch(f"{approval_path}/-1/hitlDetails", json={"chosen_options": ["Approve"]})
    assert answer.status_code == 200, answer.text

    def ended() -> str | None:
        state = run_state()
        return state if state in ("success", "failed") else None

    state = d.wait_for("the remediation run to end", ended, cd.RUN_END_SECONDS)
    if state != "success":
        raise AssertionError(
            f"the remediation run ended {state} ({failed_tasks()})\n"
            f"{d.task_logs_tail(run_id)}\n{d.logs_tail()}"
        )
    return RemediationRun(
        run_id=run_id,
        state=state,
        seconds=time.monotonic() - started,
        approval=approval,
        answer=answer.json(),
        oncall_attempt=attempt.status_code,
        timings={"approval_request": waited_for_request},
    )
