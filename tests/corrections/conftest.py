"""Data-correction tests: real PostgreSQL (``db``, ``airflow_conns`` of ``tests/conftest.py``),
the Airflow metadata DB and DAG registration (``airflow_db``, ``register_dag``, same file),
and the hand-made divergences of :mod:`correction_data`."""

from __future__ import annotations

import json

import pytest
from correction_data import RECON_CONFIG, WINDOW_END, WINDOW_START, seed

from airflow_recon_provider.reconciliation.window import Window


@pytest.fixture
def recon_config(monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("RECON_CONFIG", json.dumps(RECON_CONFIG))
    return RECON_CONFIG


@pytest.fixture
def seeded(db, airflow_conns, recon_config):
    """The divergences of :mod:`correction_data` in a fresh database, connections set."""
    seed(db)
    return db


@pytest.fixture
def window() -> Window:
    return Window.parse(WINDOW_START, WINDOW_END)


@pytest.fixture
def hook(seeded):
    from airflow_recon_provider.hooks.corrections import CorrectionsHook

    return CorrectionsHook()


@pytest.fixture
def artifacts(tmp_path):
    path = tmp_path / "artifacts"
    path.mkdir()
    return path


@pytest.fixture
def incident(seeded):
    seeded.execute(
        "INSERT INTO recon.incidents (incident_id, psp, opened_by) VALUES ('INCIDENT-472', 'stripe', 'watch')"
    )
    return "INCIDENT-472"
