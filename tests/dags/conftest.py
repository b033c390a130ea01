"""DAG tests: a fresh Airflow metadata DB once per session, the DAGs of ``dags/`` loaded by
DagBag, and a local PSP statements API (pytest-httpserver) the DAG's connections point at.

AIRFLOW_HOME, DAGS_FOLDER and LOAD_EXAMPLES are set at the top of ``tests/conftest.py``,
before anything imports airflow; the ``airflow_db`` fixture lives there too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from psp_api_server import FakePspApi

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="session")
def dagbag(airflow_db: None):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert not bag.import_errors, bag.import_errors
    return bag


@pytest.fixture
def reconciliation_dag(dagbag):
    return dagbag.dags["billing_gateway_reconciliation"]


@pytest.fixture
def psp_api(httpserver) -> FakePspApi:
    api = FakePspApi()
    httpserver.expect_request("/statements").respond_with_handler(api)
    return api
