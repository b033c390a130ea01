"""Incident tests: real parts only.

- a local SMTP server on 127.0.0.1 that records every message (aiosmtpd ``Controller`` on a
  free port), which a test can stop and start again on the same port (mail outage);
- a local HTTP server standing in for Slack's Web API (pytest-httpserver): ``chat.postMessage``
  answers like Slack and records what was posted;
- Airflow connections ``smtp_finance`` and ``slack_incidents`` as environment variables,
  next to ``billing_gateway_db`` of ``tests/conftest.py`` (fixtures ``db``, ``airflow_conns``);
- the ``billing_gateway_incident_updates`` DAG loaded by DagBag for ``dag.test()``, on the
  session's metadata DB (``airflow_db`` and ``register_dag`` of ``tests/conftest.py``).

The helpers live in ``incident_support.py`` (a module name no other test folder uses).
"""

from __future__ import annotations

import pytest
from incident_support import (  # noqa: F401  (fixtures, registered by being imported here)
    UPDATES_DAG_FILE,
    finance_conns,
    slack_api,
    smtp_server,
    statement_line,
)
from scenario import stripe_adyen


@pytest.fixture
def divergent_psp(db, airflow_conns):
    """stripe diverges in [10:00, 11:00) of 2026-11-20 (see ``incident_support.DIVERGENT``);
    adyen is clean."""
    stripe_adyen(db)
    statement_line(db, "r1", 1000, 11)
    statement_line(db, "r2", 450, 21)
    statement_line(db, "a1", 100, 29, psp="adyen")
    return db


@pytest.fixture(scope="session")
def updates_dag(airflow_db: None):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(UPDATES_DAG_FILE))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["billing_gateway_incident_updates"]
