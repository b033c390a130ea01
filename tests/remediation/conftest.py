"""Remediation tests: billing-gateway-core on a local HTTP server (``core_api``,
``core_conn``) and the DAGs of ``dags/`` (the ``dagbag`` fixture of
``tests/dags/conftest.py``). ``devtools.demo_airflow.reprocess_runs_executed_here`` executes the
reconciliation runs a reprocess triggers (``dag.test()`` runs no scheduler).

AIRFLOW_HOME, the real PostgreSQL fixtures (``db``, ``airflow_conns``) and ``register_dag``
come from ``tests/conftest.py``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "dags"))

from core_api_server import FakeBillingCore  # noqa: E402
from remediation_helpers import CORE_TOKEN  # noqa: E402


def _load_dags_conftest():
    spec = importlib.util.spec_from_file_location(
        "recon_tests_dags_conftest", HERE.parent / "dags" / "conftest.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_dags_conftest = _load_dags_conftest()
# the DAG tests' own fixture: the DagBag of dags/, loaded once per session
dagbag = _dags_conftest.dagbag


@pytest.fixture
def reconciliation_dag(dagbag):
    return dagbag.dags["billing_gateway_reconciliation"]


@pytest.fixture
def core_api(httpserver) -> FakeBillingCore:
    core = FakeBillingCore()
    httpserver.expect_request("/payments/reconciliation", method="POST").respond_with_handler(core)
    return core


@pytest.fixture
def core_conn(httpserver, monkeypatch) -> str:
    """``billing_gateway_core`` pointing at the local core, token in the password field."""
    conn = {
        "conn_type": "http",
        "host": httpserver.host,
        "port": httpserver.port,
        "schema": "http",
        "password": CORE_TOKEN,
    }
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_GATEWAY_CORE", json.dumps(conn))
    return "billing_gateway_core"
