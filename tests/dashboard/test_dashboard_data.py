"""DashboardReader against real PostgreSQL: what each PSP's row says."""

from __future__ import annotations

import pytest

from airflow_recon_provider.plugins.dashboard_data import DashboardReader, DashboardUnavailable
from airflow_recon_provider.reconciliation.kinds import DivergenceKind

pytestmark = pytest.mark.integration


def test_each_psp_with_divergence_lag_pause_incident_and_corrections(dashboard_db):
    dashboard = DashboardReader().read(cycles=3)
    assert (dashboard.window.start, dashboard.window.end) == (
        dashboard_db.window_start,
        dashboard_db.window_end,
    )
    assert [p.psp for p in dashboard.psps] == ["stripe", "adyen", "pagseguro"]
    assert dashboard.psp_source == "configured" and dashboard.notes == ()
    stripe, adyen, pagseguro = dashboard.psps

    s = stripe.summary
    assert stripe.display_name == "Stripe" and stripe.alert
    # converted to reais with the demo's EUR and USD rates; each currency in its own units
    assert (s.divergent_count, s.divergent_amount_minor) == (19, 16474052)
    assert s.reporting_currency == "BRL" and s.unconverted_currencies == []
    assert s.by_currency["BRL"].divergent_count == 16
    assert s.by_currency["BRL"].divergent_amount_minor == 10419755
    assert s.by_currency["EUR"].divergent_count == 3
    assert s.by_currency["EUR"].divergent_amount_minor == 962910
    assert set(s.used_rates) >= {"EUR"}
    doc = stripe.as_dict()["summary"]
    assert doc["by_currency"]["EUR"]["divergent_amount_minor"] == 962910
    assert doc["fx_rates"]["EUR"]["rate"] == "6.2875"
    assert s.by_kind[DivergenceKind.STATUS_MISMATCH].count == 12
    assert s.by_kind[DivergenceKind.AMOUNT_MISMATCH].count == 2
    assert s.by_kind[DivergenceKind.MISSING_IN_STATEMENT].count == 1
    assert {kind for kind, figures in s.by_kind.items() if figures.count} == set(DivergenceKind)
    assert s.lag_cycles == 3  # the three cycles of the window failed
    assert stripe.paused and stripe.control.actor == "oncall.ana"

    assert stripe.incident.incident_id == dashboard_db.incident_id
    assert [e.step for e in stripe.timeline] == ["incident.opened", "investigation.snapshot"]
    assert stripe.timeline[-1].actor == "oncall.ana"
    (correction,) = stripe.corrections
    assert (correction.approved_by, correction.requested_by) == ("finance.bia", "oncall.ana")
    assert correction.incident_id == dashboard_db.incident_id

    # the remediation link carries the incident's window, as a dry run by default
    assert stripe.remediation.as_dict() == {
        "dag_id": "billing_gateway_remediation",
        "url": "/dags/billing_gateway_remediation",
        "trigger_api": "/api/v2/dags/billing_gateway_remediation/dagRuns",
        "conf": {
            "psp": "stripe",
            "window_start": dashboard_db.window_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "window_end": dashboard_db.window_end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "dry_run": True,
            "incident_id": dashboard_db.incident_id,
        },
    }
    for healthy in (adyen, pagseguro):
        assert not healthy.alert and healthy.summary.divergent_count == 0
        assert healthy.incident is None and healthy.corrections == () and healthy.problems == ()
        assert healthy.summary.lag_cycles == 0 and not healthy.paused

    as_json = dashboard.as_dict()
    assert as_json["psps"][0]["incident"]["timeline"][0]["step"] == "incident.opened"
    assert as_json["psps"][0]["summary"]["by_kind"]["status_mismatch"]["count"] == 12


def test_a_missing_connection_is_one_clear_sentence(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_BILLING_GATEWAY_DB", raising=False)
    with pytest.raises(DashboardUnavailable) as caught:
        DashboardReader(billing_gateway_conn_id="no_such_recon_conn").read()
    assert "no_such_recon_conn" in caught.value.message and caught.value.status_code == 503


def test_cycles_out_of_range_are_refused(dashboard_db):
    with pytest.raises(DashboardUnavailable) as caught:
        DashboardReader().read(cycles=0)
    assert caught.value.status_code == 400
