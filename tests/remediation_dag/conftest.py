"""Remediation DAG tests: ``billing_gateway_remediation`` and its operators, real parts only.

From ``tests/conftest.py``: AIRFLOW_HOME, the real PostgreSQL (``db``, ``db_url``,
``airflow_conns``), the Airflow metadata DB and DAG registration (``airflow_db``,
``register_dag``). Reused stand-ins: the recording SMTP server and the Slack Web API double
of ``tests/incidents/incident_support.py``, billing-gateway-core of
``tests/remediation/core_api_server.py`` and the runner of reprocess child runs of
``tests/remediation/remediation_helpers.py``. Here: the seeded scenario and a PSP API
serving what the PSP really said (``remediation_dag_support.py``).
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "remediation", HERE.parent / "incidents"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from core_api_server import FakeBillingCore  # noqa: E402
from incident_support import finance_conns, slack_api, smtp_server  # noqa: E402, F401  (fixtures)
from remediation_dag_support import RECON_CONFIG, SnapshotPspApi, seed_scenario  # noqa: E402
from remediation_helpers import CORE_TOKEN  # noqa: E402

DAGS_FOLDER = HERE.parents[1] / "dags"


@pytest.fixture(scope="session")
def recon_dags(airflow_db):
    """``dags/`` loaded once with the test PSP list (the remediation form's PSP enum is
    built from the configuration when the file is parsed), both DAGs serialized."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    previous = os.environ.get("RECON_CONFIG")
    os.environ["RECON_CONFIG"] = json.dumps(RECON_CONFIG)
    try:
        bag = DagBag(dag_folder=str(DAGS_FOLDER))
    finally:
        if previous is None:
            os.environ.pop("RECON_CONFIG", None)
        else:
            os.environ["RECON_CONFIG"] = previous
    assert not bag.import_errors, bag.import_errors
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    return bag


def _with_params_restored(dag):
    """Run a test with ``dag`` and give the DAG its own Params back afterwards.

    ``dag.test()`` runs tasks in this process, and the Task SDK's ``process_params`` resolves
    the run's conf *into the DAG's own Param objects* (``ParamsDict.update`` keeps them by
    reference, the DAG's and each task's), so a run with ``dry_run: false`` would leave
    ``false`` as the form's default for the next test. A deployed task parses its DAG
    afresh, so only in-process runs see it.
    """
    saved = copy.deepcopy(dag.params)
    saved_tasks = {task.task_id: copy.deepcopy(task.params) for task in dag.tasks}
    yield dag
    dag.params = saved
    for task in dag.tasks:
        task.params = saved_tasks[task.task_id]


@pytest.fixture
def remediation_dag(recon_dags):
    yield from _with_params_restored(recon_dags.dags["billing_gateway_remediation"])


@pytest.fixture
def reconciliation_dag(recon_dags):
    yield from _with_params_restored(recon_dags.dags["billing_gateway_reconciliation"])


@pytest.fixture
def recon_config(monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("RECON_CONFIG", json.dumps(RECON_CONFIG))
    return RECON_CONFIG


@pytest.fixture
def scenario(db, airflow_conns, recon_config):
    """The seeded divergence of ``remediation_dag_support``, connections to the database set."""
    return seed_scenario(db)


@pytest.fixture
def psp_api(scenario, db, httpserver, monkeypatch) -> SnapshotPspApi:
    api = SnapshotPspApi.from_database(db)
    httpserver.expect_request("/statements").respond_with_handler(api.statements)
    httpserver.expect_request("/status").respond_with_handler(api.status)
    for psp in ("stripe", "adyen"):
        monkeypatch.setenv(f"AIRFLOW_CONN_PSP_{psp.upper()}", httpserver.url_for("/"))
    return api


@pytest.fixture
def core_api(httpserver, monkeypatch) -> FakeBillingCore:
    core = FakeBillingCore()
    httpserver.expect_request("/payments/reconciliation", method="POST").respond_with_handler(core)
    monkeypatch.setenv(
        "AIRFLOW_CONN_BILLING_GATEWAY_CORE",
        json.dumps(
            {
                "conn_type": "http",
                "host": httpserver.host,
                "port": httpserver.port,
                "schema": "http",
                "password": CORE_TOKEN,
            }
        ),
    )
    return core


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> dict[str, Path]:
    """Artifacts and the demo release script's record under the test's directory; release
    steps in local mode (the Airflow Variable ``recon_release_mode``)."""
    paths = {"artifacts": tmp_path / "artifacts", "release": tmp_path / "release-actions.json"}
    monkeypatch.setenv("RECON_ARTIFACTS_DIR", str(paths["artifacts"]))
    monkeypatch.setenv("RECON_RELEASE_RECORD", str(paths["release"]))
    monkeypatch.setenv("AIRFLOW_VAR_RECON_RELEASE_MODE", "local")
    return paths


@pytest.fixture
def children_run_by_the_test(reconciliation_dag):
    """When the reprocess trigger polls, first execute the queued reconciliation runs (what a
    scheduler and a worker would do meanwhile; ``dag.test()`` runs no scheduler), the way the
    headless demo does. Yields the run ids executed."""
    from airflow_recon_provider.devtools.demo_airflow import reprocess_runs_executed_here

    with reprocess_runs_executed_here(reconciliation_dag) as executed:
        yield executed


@pytest.fixture
def airflow_api(tmp_path, monkeypatch, airflow_db) -> str:
    """Airflow 3.3's own REST API (``create_app(apps="core")``, SimpleAuthManager) on
    127.0.0.1 over this session's metadata database, as the ``airflow_api`` connection: the
    scope step writes the run's note through it."""
    import json
    import threading
    import time

    import uvicorn
    from airflow.api_fastapi.app import create_app

    from airflow_recon_provider.devtools.stand_ins import free_port

    user, password = "oncall-notes", "Notes-Pass-314"
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({user: password}))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", f"{user}:admin")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
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
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http"}
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", json.dumps({**conn, "login": user, "password": password}))
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
