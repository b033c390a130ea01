"""Dashboard tests: the data layer against the real PostgreSQL of ``tests/conftest.py``
(the demo scenario seeded into the test's database), the app through FastAPI's TestClient."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import DRY_RUN_CSV, EVIDENCE_DAG, EVIDENCE_RUN, HOSTILE, SNAPSHOT_CSV

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


@dataclass(frozen=True)
class ClosedIncident:
    """adyen's closed incident with its evidence in a file:// store."""

    incident_id: str
    store_dir: Path
    artifacts: dict[str, Any]  # kind -> ArtifactRecord
    closing_markdown: str
    closing_html: str


@pytest.fixture
def closed_incident(dashboard_db, db, tmp_path) -> ClosedIncident:
    """adyen: an incident opened, worked (snapshot, finance ticket, PSP ticket, two
    corrections in BRL and EUR), recovered and closed with its closing report; every free
    text holds :data:`HOSTILE`. Its artifacts (snapshot, dry run, closing report in markdown
    and HTML) were written by the artifact store to a file:// base and recorded in
    ``recon.artifacts``, plus a dry run's snapshot of the same run recorded without the
    incident, and another run's artifact that is not the incident's."""
    from airflow_recon_provider.artifacts import ArtifactStore, content_type_of
    from airflow_recon_provider.hooks.artifacts import ArtifactsHook
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation import ReconConfig, Window
    from airflow_recon_provider.reconciliation.incident_messages import (
        render_closing_report_html,
        render_closing_report_markdown,
    )

    config = ReconConfig.load()
    hook = IncidentHook(config=config)
    window = Window(dashboard_db.window_start, dashboard_db.window_end)
    incident_id = hook.open_incident(
        "adyen", window=window, reason=f"finance report {HOSTILE}", actor="finance.bia",
        figures=hook.gateway.summary("adyen", window), run_id=EVIDENCE_RUN,
    )  # fmt: skip
    hook.record_event(
        incident_id, step="investigation.snapshot", outcome=f"snapshot {HOSTILE}", actor="oncall.ana",
        run_id=EVIDENCE_RUN, details={"finance_ticket": "FIN-88<b>"},
    )  # fmt: skip
    hook.set_psp_ticket(incident_id, "ADY-7", actor="oncall.ana", run_id=EVIDENCE_RUN)
    # set_psp_ticket refuses markup; a number written before that check (or by another tool)
    # must still be escaped everywhere it is shown
    db.execute(
        "UPDATE recon.incidents SET psp_ticket = %s WHERE incident_id = %s", (f"ADY-7 {HOSTILE}", incident_id)
    )
    for tid, amount, currency in ((9001, 1000, "BRL"), (9002, 2550, "EUR"), (9003, 125, "BRL")):
        db.execute(
            """INSERT INTO recon.corrections (correction_key, incident_id, psp, transaction_id,
                   provider_reference, transaction_type, kind, amount_minor, currency, before, after,
                   requested_by, approved_by, run_id)
               VALUES ('k-adyen', %s, 'adyen', %s, %s, 'capture', 'status_mismatch', %s, %s,
                       '{"status": "authorized"}', '{"status": "captured"}', 'oncall.ana',
                       'finance.bia', %s)""",
            (incident_id, tid, f"ady_{tid}", amount, currency, EVIDENCE_RUN),
        )
    hook.transition(incident_id, "recovered", actor="billing_gateway_remediation", run_id=EVIDENCE_RUN)
    hook.transition(incident_id, "closed", actor="billing_gateway_remediation", run_id=EVIDENCE_RUN)
    report = hook.closing_report(incident_id)
    markdown, html = render_closing_report_markdown(report), render_closing_report_html(report)
    hook.attach_closing_report(incident_id, markdown=markdown, html=html, actor="billing_gateway_remediation")

    store_dir = tmp_path / "store"
    store = ArtifactStore(f"file://{store_dir}")
    records = ArtifactsHook()

    def publish(kind: str, name: str, data: bytes, *, run_id: str = EVIDENCE_RUN, incident: str | None):
        stored = store.put(EVIDENCE_DAG, run_id, name, data)
        return records.record(
            dag_id=EVIDENCE_DAG, run_id=run_id, task_id=f"task_{kind}", psp="adyen", incident_id=incident,
            kind=kind, name=name, url=stored.url, content_type=content_type_of(name),
            size_bytes=stored.size_bytes, sha256=stored.sha256,
        )  # fmt: skip

    artifacts = {
        "snapshot": publish("snapshot", "snapshot_adyen.csv", SNAPSHOT_CSV, incident=incident_id),
        "dry_run": publish("dry_run", "correction_k-adyen.csv", DRY_RUN_CSV, incident=incident_id),
        "closing_report": publish(
            "closing_report", f"closing_report_{incident_id}.md", markdown.encode(), incident=incident_id
        ),
        "closing_report_html": publish(
            "closing_report_html", f"closing_report_{incident_id}.html", html.encode(), incident=incident_id
        ),
        # a dry run's snapshot of a run on the timeline, recorded before the incident had its id
        "early_snapshot": publish("snapshot", "snapshot_adyen.try2.csv", b"a,b\n", incident=None),
        # another run, not on the incident's timeline
        "elsewhere": publish(
            "psp_ticket", "psp_ticket_adyen.csv", b"x\n", run_id="manual__other", incident=None
        ),
    }
    # the timeline names the published dry run (ArtifactRecord.summary(), as the operators do)
    hook.record_event(
        incident_id, step="mitigation.data_correction", outcome="dry run: 3 correction(s) proposed",
        actor="oncall.ana", run_id=EVIDENCE_RUN, details={"artifact": artifacts["dry_run"].summary()},
    )  # fmt: skip
    return ClosedIncident(incident_id, store_dir, artifacts, markdown, html)
