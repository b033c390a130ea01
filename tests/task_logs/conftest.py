"""Fixtures of the "coletar logs" tests (runbook Investigação 2): the seeded gateway database
with failed cycles and an open incident, the REST API stand-in, the package's DAGs."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow_api_stand_in import AirflowApiStandIn
from task_logs_support import (
    API_PASSWORD,
    API_USER,
    C12,
    INCIDENT,
    PSP,
    WINDOW,
    api_connection,
    fill_stand_in,
)

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture
def seeded(db, airflow_conns, monkeypatch, tmp_path):
    """stripe's data 10:00-15:00 with cycles 12:00 and 13:00 failed, an open incident, and
    the artifact store under the test's tmp dir."""
    from airflow_recon_provider.devtools.seed import SeedSpec, seed_database
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation.window import Window

    monkeypatch.setenv("RECON_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    spec = SeedSpec(seed=5, psps=(PSP,), rows_per_psp=60, start=C12.replace(hour=10), hours=5)
    seed_database(db, None, spec)
    db.execute(
        """INSERT INTO payment_reconciliation_logs (psp, cycle_start, cycle_end, status, notes, created_at)
           VALUES ('stripe', '2026-11-20T12:00Z', '2026-11-20T13:00Z', 'failed', 'match_transactions failed',
                   '2026-11-20T14:10Z'),
                  ('stripe', '2026-11-20T13:00Z', '2026-11-20T14:00Z', 'failed', 'match_transactions failed',
                   '2026-11-20T15:10Z')"""
    )
    IncidentHook().open_incident(
        PSP, incident_id=INCIDENT, window=Window.parse(*WINDOW), reason="cycles failed", actor="oncall"
    )
    return db


@pytest.fixture
def api(monkeypatch):
    server = AirflowApiStandIn(users={API_USER: API_PASSWORD}).start()
    fill_stand_in(server)
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", api_connection(server.url, login=API_USER))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def recon_dags(airflow_db):
    """``dags/`` parsed once and serialized (``dag.test()`` needs it)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert not bag.import_errors, bag.import_errors
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    return bag
