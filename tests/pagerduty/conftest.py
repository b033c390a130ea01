"""PagerDuty tests (runbook Detecção 1): the alert ``billing_gateway-reconciliation`` sent to
the local stand-in of the Events API v2 (``devtools.pagerduty_stand_in.DemoPagerDuty``, a
real HTTP server on 127.0.0.1 that checks every event's schema), with the real PostgreSQL of
``tests/conftest.py`` and the package's DAGs run with ``dag.test()``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pagerduty_support import PSPS, pagerduty_connection

from airflow_recon_provider.devtools.pagerduty_stand_in import DemoPagerDuty
from airflow_recon_provider.devtools.stand_ins import free_port
from airflow_recon_provider.reconciliation.window import floor_cycle

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture
def pagerduty(monkeypatch):
    """The Events API v2 stand-in, answering normally; ``pagerduty_recon`` points at it."""
    server = DemoPagerDuty().start()
    monkeypatch.setenv("AIRFLOW_CONN_PAGERDUTY_RECON", pagerduty_connection(server.url))
    yield server
    server.stop()


@pytest.fixture
def pagerduty_down(monkeypatch):
    """The stand-in answering HTTP 500 to every event (an outage)."""
    server = DemoPagerDuty(fail_status=500).start()
    monkeypatch.setenv("AIRFLOW_CONN_PAGERDUTY_RECON", pagerduty_connection(server.url))
    yield server
    server.stop()


@pytest.fixture
def pagerduty_unreachable(monkeypatch) -> str:
    """``pagerduty_recon`` pointing at a port nobody listens on."""
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_PAGERDUTY_RECON", pagerduty_connection(url))
    return url


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


@pytest.fixture
def watch_dag(recon_dags):
    """The divergence watch, with no remediation run left by an earlier test (each test's
    database numbers its incidents from 1, so ``watch__INCIDENT-1`` would already exist)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(DagRun).filter(DagRun.dag_id == "billing_gateway_remediation").delete()
    return recon_dags.dags["billing_gateway_divergence_watch"]


@pytest.fixture
def now_cycle() -> datetime:
    return floor_cycle(datetime.now(UTC))


@pytest.fixture
def breached(db, airflow_conns, monkeypatch, now_cycle):
    """stripe diverges by R$ 7.500,00 (above R$ 5.000) in the watch's window, with its cycles
    up to date (no lag): the alert fires for reason ``amount``; adyen is healthy."""
    monkeypatch.setenv("RECON_CONFIG", json.dumps({"psps": PSPS}))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example:8080")
    monkeypatch.setenv("AIRFLOW__RECON__DASHBOARD_BASE_URL", "")
    db.execute("INSERT INTO payment_intents (id, provider, provider_reference) VALUES (1, 'stripe', 'r1')")
    db.execute(
        "INSERT INTO payment_transactions (intent_id, transaction_type, status, amount_minor, currency,"
        " created_at) VALUES (1, 'capture', 'captured', 750000, 'BRL', %s)",
        (now_cycle - timedelta(minutes=40),),
    )
    for psp in PSPS:
        for n in (3, 2, 1):
            start = now_cycle - timedelta(hours=n)
            db.execute(
                "INSERT INTO payment_reconciliation_logs (psp, cycle_start, cycle_end, status)"
                " VALUES (%s, %s, %s, 'success')",
                (psp, start, start + timedelta(hours=1)),
            )
    return db
