"""Dashboard tests: the data layer against the real PostgreSQL of ``tests/conftest.py``
(the demo scenario seeded into the test's database), the app through FastAPI's TestClient."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from airflow_recon_provider.devtools.demo_fx import demo_rates_valid_from, seed_demo_fx_rates
from airflow_recon_provider.devtools.demo_scenario import RECON_CONFIG, seed_demo_scenario


@dataclass(frozen=True)
class DashboardScenario:
    incident_id: str
    window_start: datetime
    window_end: datetime


@pytest.fixture
def dashboard_db(db, airflow_conns, monkeypatch) -> DashboardScenario:
    """stripe diverges in the last three cycles, with an open incident (two timeline
    events), its reconciliation paused and one correction approved by finance; adyen and
    pagseguro are healthy."""
    from airflow_recon_provider.hooks.controls import ReconciliationControlHook
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation import ReconConfig, Window

    monkeypatch.setenv("RECON_CONFIG", json.dumps(RECON_CONFIG))
    scenario = seed_demo_scenario(db, None, now=datetime.now(UTC))
    seed_demo_fx_rates(db, valid_from=demo_rates_valid_from(scenario.window_start))
    config = ReconConfig.load()
    incidents = IncidentHook(config=config)
    window = Window(scenario.window_start, scenario.window_end)
    summary = incidents.gateway.summary("stripe", window)
    incident_id = incidents.open_incident(
        "stripe", window=window, reason="alert billing_gateway-reconciliation (amount, lag)",
        actor="billing_gateway_divergence_watch", figures=summary,
    )  # fmt: skip
    incidents.record_event(
        incident_id, step="investigation.snapshot", outcome="snapshot of 720 transaction(s)",
        actor="oncall.ana", run_id="manual__1", figures=summary,
    )  # fmt: skip
    ReconciliationControlHook(config=config).set_state(
        "stripe", "paused", actor="oncall.ana", reason="runbook Contenção", incident_id=incident_id
    )
    tid = scenario.status_mismatch_ids[0]
    db.execute(
        """INSERT INTO recon.corrections (correction_key, incident_id, psp, transaction_id,
               provider_reference, transaction_type, kind, amount_minor, before, after,
               requested_by, approved_by, run_id)
           SELECT 'k1', %s, 'stripe', t.id, i.provider_reference, t.transaction_type,
                  'status_mismatch', t.amount_minor, '{"status": "authorized"}', '{"status": "captured"}',
                  'oncall.ana', 'finance.bia', 'manual__1'
             FROM payment_transactions t JOIN payment_intents i ON i.id = t.intent_id WHERE t.id = %s""",
        (incident_id, tid),
    )
    return DashboardScenario(incident_id, scenario.window_start, scenario.window_end)
