"""Investigação 2 "coletar logs" against Airflow's own REST API: the installed Airflow 3.3's
FastAPI app (``airflow.api_fastapi.app.create_app``, SimpleAuthManager, ``POST /auth/token``)
served by uvicorn on 127.0.0.1, over this session's metadata database. The failed try is real:
``billing_gateway_reconciliation`` run with ``dag.test()`` for a PSP without a ``psp_<name>``
connection, so ``fetch_psp_statements`` fails and records its cycle as ``failed``. ``dag.test()``
writes no task log file, so the test writes that try's log where the api-server's
``FileTaskHandler`` reads it (``dag_id=/run_id=/task_id=/map_index=/attempt=1.log``, JSON lines
as the supervisor writes them), with a token in it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from task_logs_support import INCIDENT, PSP, api_connection, error_detail, run_investigation

from airflow_recon_provider.devtools.stand_ins import free_port

pytestmark = pytest.mark.timeout(300)

USER, PASSWORD = "oncall", "Real-Api-Pass-987"
LEAKED = "sk_live_REALAPI_0123456789abcdef"


@pytest.fixture
def real_api(tmp_path, monkeypatch, airflow_db):
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", f"{USER}:admin")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
    import uvicorn
    from airflow.api_fastapi.app import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(apps="core"), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the api-server did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def write_task_log(run_id: str, task_id: str, map_index: int, try_number: int) -> Path:
    from airflow.configuration import conf

    folder = Path(conf.get("logging", "base_log_folder"))
    path = (
        folder
        / "dag_id=billing_gateway_reconciliation"
        / f"run_id={run_id}"
        / f"task_id={task_id}"
        / f"map_index={map_index}"
        / f"attempt={try_number}.log"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        {"timestamp": "2026-11-20T14:10:00.100000Z", "level": "info", "event": "starting", "logger": "task"},
        {
            "timestamp": "2026-11-20T14:10:01.000000Z",
            "level": "error",
            "event": f"statement request failed with Authorization: Bearer {LEAKED}",
            "logger": "airflow.task.operators",
        },
        {
            "timestamp": "2026-11-20T14:10:02.000000Z",
            "level": "error",
            "event": "Task failed with exception",
            "logger": "task",
            "error_detail": error_detail("Airflow connection 'psp_stripe' is not defined"),
        },
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_real_api_server_serves_the_failed_fetch_log(seeded, real_api, register_dag, monkeypatch, recon_dags):
    from airflow_recon_provider.hooks.incidents import IncidentHook

    reconciliation = recon_dags.dags["billing_gateway_reconciliation"]
    run = reconciliation.test(run_conf={"psp": PSP, "cycle_start": "2026-11-20T12:00:00Z"})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states["fetch_psp_statements"] == "failed", states
    (fetch,) = [ti for ti in run.get_task_instances() if ti.task_id == "fetch_psp_statements"]
    write_task_log(run.run_id, "fetch_psp_statements", fetch.map_index, fetch.try_number)

    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", api_connection(real_api, login=USER, password=PASSWORD))
    _, result = run_investigation(register_dag, "real_api")
    logs = result["task_logs"]
    assert logs["status"] == "collected", logs
    mine = [t for t in logs["tries"] if t["run_id"] == run.run_id]
    assert [(t["task_id"], t["try_number"], t["state"]) for t in mine] == [
        ("fetch_psp_statements", 1, "failed")
    ]
    lines = mine[0]["lines"]
    assert lines[0] == "14:10:01 ERROR statement request failed with Authorization: Bearer ***", lines
    assert lines[-1] == "RuntimeError: Airflow connection 'psp_stripe' is not defined"
    text = json.dumps(result)
    assert LEAKED not in text and PASSWORD not in text
    (event,) = [e for e in IncidentHook().timeline(INCIDENT) if e.step == "investigation.task_logs"]
    assert any(t["lines"] == lines for t in event.details["tries"])
    assert LEAKED not in json.dumps(event.details) and LEAKED not in event.outcome
