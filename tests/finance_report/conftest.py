"""Finance report tests (Detecção 2): real PostgreSQL, the Slack Web API stand-in and the
Airflow metadata DB of ``tests/conftest.py``; the seeded divergence of the remediation DAG
tests (``remediation_dag_support``: stripe diverges over 2026-11-20 [11:00, 14:00))."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for folder in (HERE.parent / "remediation_dag", HERE.parent / "incidents"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from incident_support import finance_conns, slack_api, smtp_server  # noqa: E402, F401  (fixtures)
from remediation_dag_support import RECON_CONFIG, seed_scenario  # noqa: E402

DAGS_FOLDER = HERE.parents[1] / "dags"


@pytest.fixture(scope="session")
def finance_dags(airflow_db):
    """``dags/`` loaded once with the test PSP list (the forms' PSP enum), serialized."""
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


@pytest.fixture
def report_dag(finance_dags):
    from airflow_recon_provider.devtools.demo_airflow import params_restored

    with params_restored(finance_dags.dags["billing_gateway_finance_report"]) as dag:
        yield dag


@pytest.fixture
def remediation_dag(finance_dags):
    from airflow_recon_provider.devtools.demo_airflow import params_restored

    with params_restored(finance_dags.dags["billing_gateway_remediation"]) as dag:
        yield dag


@pytest.fixture
def recon_config(monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("RECON_CONFIG", json.dumps(RECON_CONFIG))
    return RECON_CONFIG


@pytest.fixture
def scenario(db, airflow_conns, recon_config):
    return seed_scenario(db)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """The dry run's artifacts (snapshot, correction CSV) under the test's directory."""
    monkeypatch.setenv("RECON_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    return tmp_path
