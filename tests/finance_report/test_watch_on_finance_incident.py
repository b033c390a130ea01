"""The divergence watch and an incident opened by finance's report (Detecção 1 and 2).

The rule (``reconciliation.detection.watch_fires_on_open_incident``): a breach of the alert
rule fires on the PSP's open incident when finance's report is on it and nothing but the
report's dry run worked on it; the watch records why on the timeline and starts the
incident's real remediation (``watch__<incident>``). Once it fired, or while a real run
holds the PSP's remediation lease, or after a real or on-call run worked on the incident,
the watch stays quiet. Real PostgreSQL, the real finance report DAG and its dry run.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from remediation_dag_support import WINDOW_END, WINDOW_START, states, xcom

from airflow_recon_provider.operators.watch import OpenIncidentsForAlertsOperator
from airflow_recon_provider.reconciliation.detection import (
    WATCH_ACTOR,
    WATCH_ALERT_STEP,
    OpenIncidentActivity,
    watch_fires_on_open_incident,
)
from airflow_recon_provider.reconciliation.window import Window
from airflow_recon_provider.triggers.divergence import DivergenceTrigger

#: five minutes after the seeded divergence's window [11:00, 14:00): the watch checks it
NOW = datetime(2026, 11, 20, 14, 5, tzinfo=UTC)
WINDOW = Window(datetime(2026, 11, 20, 11, tzinfo=UTC), datetime(2026, 11, 20, 14, tzinfo=UTC))
REPORT = {
    "psp": "stripe",
    "window_start": WINDOW_START,
    "window_end": WINDOW_END,
    "finance_ticket": "FIN-88",
    "description": "Ledger acima do extrato em R$ 2.000",
}
DRY_RUN = "finance_report__FIN-91__manual__2026-11-20T12:00:00+00:00"


def _poll() -> list[dict]:
    """One poll of a fresh trigger (a restarted triggerer: nothing remembered in memory)."""
    return asyncio.run(DivergenceTrigger(psps=["stripe"]).poll_once(set(), now=NOW))


def _open_incidents(alerts: list[dict], run_id: str) -> list[dict]:
    return OpenIncidentsForAlertsOperator(task_id="open_incidents", alerts=alerts).execute({"run_id": run_id})


def _watch_events(db, incident_id: str) -> list[tuple]:
    return db.execute(
        "SELECT run_id, outcome, details FROM recon.incident_events WHERE incident_id = %s AND step = %s"
        " ORDER BY id",
        (incident_id, WATCH_ALERT_STEP),
    ).fetchall()


def _finance_incident(ticket: str = "FIN-91", dry_run: str = DRY_RUN) -> str:
    """An incident as ``billing_gateway_finance_report``'s record step leaves it (opened with
    the report, the report on the timeline with the dry run it started)."""
    from airflow_recon_provider.hooks.incidents import IncidentHook

    hook = IncidentHook()
    incident_id = hook.open_incident(
        "stripe", window=WINDOW, reason=f"finance report {ticket}", actor="finance", run_id="manual__fin"
    )
    hook.record_event(
        incident_id,
        step="detection.finance_report",
        outcome=f"relato do financeiro {ticket}",
        actor="finance",
        run_id="manual__fin",
        details={
            "finance_ticket": ticket,
            "dry_run": {"dag_id": "billing_gateway_remediation", "run_id": dry_run},
        },
    )
    return incident_id


def _logged(capsys) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


@pytest.mark.timeout(400)
def test_a_breach_on_the_finance_report_incident_starts_its_real_remediation_once(
    report_dag, remediation_dag, scenario, finance_conns, workdir, db, capsys
):
    from airflow_recon_provider.devtools.demo_airflow import drive_dag_run

    # finance reports stripe's difference: an incident, and its dry run (run here, as the
    # scheduler would) — the only remediation on it
    report = report_dag.test(run_conf=REPORT)
    assert report.state == "success", states(report)
    recorded = xcom(report, "record_report")
    incident_id = recorded["incident_id"]
    dry_id = f"finance_report__FIN-88__{report.run_id}"
    assert drive_dag_run(remediation_dag, dry_id) == "success"

    # the breach fires on that incident, saying why
    (alert,) = _poll()
    assert alert["psp"] == "stripe" and alert["incident_id"] == incident_id
    assert dry_id in alert["fired_on_open_incident"]
    assert f"PSP stripe fires on its open incident: incident {incident_id}" in _logged(capsys)

    # the watch run records why on the timeline and starts the incident's real remediation
    (run,) = _open_incidents([alert], "asset_triggered__w1")
    assert run == {
        "trigger_run_id": f"watch__{incident_id}",
        "conf": {
            "psp": "stripe",
            "window_start": alert["window_start"],
            "window_end": alert["window_end"],
            "incident_id": incident_id,
            "dry_run": False,
        },
    }
    assert db.execute("SELECT count(*) FROM recon.incidents").fetchone()[0] == 1  # no second incident
    ((run_id, outcome, details),) = _watch_events(db, incident_id)
    assert run_id == "asset_triggered__w1"
    assert outcome == (
        f"Alerta billing_gateway-reconciliation ({alert['reason']}) no incidente {incident_id}, em que só o "
        f"relato do financeiro trabalhou (simulação {dry_id}): o monitor de divergência inicia a "
        f"remediação real, execução watch__{incident_id}."
    )
    assert (
        details["finance_dry_runs"] == [dry_id] and details["remediation_run_id"] == f"watch__{incident_id}"
    )
    assert details["why"] == alert["fired_on_open_incident"]
    assert details["alert"]["window_end"] == "2026-11-20T14:00:00+00:00"

    # the watch run retried: the same remediation run (Airflow skips it), nothing recorded twice
    assert _open_incidents([alert], "asset_triggered__w1") == [run]
    assert len(_watch_events(db, incident_id)) == 1

    # a re-fire: a restarted triggerer stays quiet, and a later watch run with the old
    # alert starts nothing
    assert _poll() == []
    assert f"incident {incident_id} is open and the watch already started its remediation" in _logged(capsys)
    assert _open_incidents([alert], "asset_triggered__w2") == []
    assert len(_watch_events(db, incident_id)) == 1

    # PagerDuty's alert links to the watch's remediation run, not to the dry run
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.operators.pagerduty import remediation_run_id

    hook = IncidentHook()
    assert remediation_run_id(hook.get(incident_id), hook) == f"watch__{incident_id}"


def test_quiet_while_a_real_remediation_holds_the_lease_and_after_it_worked_on_the_incident(
    scenario, db, capsys
):
    from airflow_recon_provider.hooks.remediation_lease import RemediationLeaseHook

    incident_id = _finance_incident()
    (alert,) = _poll()  # nothing but finance's report on it yet: it fires
    lease = RemediationLeaseHook()
    # then on-call started the incident's real remediation by hand: it holds the PSP's lease
    lease.acquire(
        "stripe",
        dag_id="billing_gateway_remediation",
        run_id="manual__oncall",
        actor="oncall",
        incident_id=incident_id,
    )
    assert _poll() == []
    assert "billing_gateway_remediation run manual__oncall holds the PSP's remediation lease" in _logged(
        capsys
    )
    # a watch run acting on the alert seen before the lease was taken decides again: quiet
    assert _open_incidents([alert], "asset_triggered__w3") == []
    assert _watch_events(db, incident_id) == []

    # the run ended and gave the lease back, the incident still open: someone acted on it
    lease.release(dag_id="billing_gateway_remediation", run_id="manual__oncall", actor="oncall")
    assert _poll() == []
    assert f"incident {incident_id} is open and a real remediation run already worked on it" in _logged(
        capsys
    )


def test_a_lease_held_for_another_run_of_the_psp_keeps_it_quiet_until_released(scenario, db, capsys):
    from airflow_recon_provider.hooks.remediation_lease import RemediationLeaseHook

    incident_id = _finance_incident()
    lease = RemediationLeaseHook()
    # a reprocess of stripe with no incident holds the lease: one real remediation at a time
    lease.acquire("stripe", dag_id="billing_gateway_reprocess", run_id="manual__rp", actor="oncall")
    assert _poll() == []
    assert "billing_gateway_reprocess run manual__rp holds" in _logged(capsys)
    lease.release(dag_id="billing_gateway_reprocess", run_id="manual__rp", actor="oncall")
    (alert,) = _poll()
    assert alert["incident_id"] == incident_id


def test_an_oncall_run_on_the_incident_keeps_it_quiet(scenario, db, capsys):
    from airflow_recon_provider.hooks.incidents import IncidentHook

    incident_id = _finance_incident()
    # on-call's own dry run recorded its scope on the incident: someone is on it
    IncidentHook().record_event(
        incident_id,
        step="investigation.scope",
        outcome="dry run by oncall",
        actor="oncall",
        run_id="manual__oncall_dry",
        details={"dry_run": True},
    )
    assert _poll() == []
    assert "remediation run(s) manual__oncall_dry worked on it" in _logged(capsys)


def test_an_incident_without_a_finance_report_keeps_it_quiet(scenario, db, capsys):
    from airflow_recon_provider.hooks.incidents import IncidentHook

    incident_id = IncidentHook().open_incident(
        "stripe", window=WINDOW, reason="opened by hand", actor="oncall", run_id=None
    )
    assert _poll() == []
    assert f"incident {incident_id} is open (opened by oncall); its remediation is left to it" in _logged(
        capsys
    )


@pytest.mark.parametrize(
    ("activity", "fires"),
    [
        (OpenIncidentActivity.of("INCIDENT-1", "finance", finance_dry_runs=["d1"], scope_runs=["d1"]), True),
        (OpenIncidentActivity.of("INCIDENT-1", "finance", finance_dry_runs=["d1"]), True),  # not yet run
        (
            OpenIncidentActivity.of(
                "INCIDENT-1", "finance", finance_dry_runs=["d1", "d2"], scope_runs=["d2"]
            ),
            True,
        ),
        (OpenIncidentActivity.of("INCIDENT-1", "oncall"), False),
        (OpenIncidentActivity.of("INCIDENT-1", WATCH_ACTOR, finance_dry_runs=["d1"]), False),
        (OpenIncidentActivity.of("INCIDENT-1", "finance", finance_dry_runs=["d1"], watch_alerts=1), False),
        (OpenIncidentActivity.of("INCIDENT-1", "finance", finance_dry_runs=["d1"], scope_runs=["x"]), False),
        (OpenIncidentActivity.of("INCIDENT-1", "finance", finance_dry_runs=["d1"], real_run_claims=1), False),
        (
            OpenIncidentActivity.of("INCIDENT-1", "finance", finance_dry_runs=["d1"], lease_holder="r run x"),
            False,
        ),
    ],
)
def test_the_rule(activity, fires):
    assert watch_fires_on_open_incident(activity)[0] is fires
