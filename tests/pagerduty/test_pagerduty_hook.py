"""ReconPagerDutyEventsHook against the Events API v2 stand-in over real HTTP: the address
comes from the connection's host, the routing key from its password (or extra), bounded
retries while PagerDuty is unavailable, no retry of a refused event, and no routing key in
any error."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from pagerduty_support import ROUTING_KEY, pagerduty_connection

from airflow_recon_provider.devtools.pagerduty_stand_in import DemoPagerDuty
from airflow_recon_provider.hooks.pagerduty import (
    DEFAULT_EVENTS_URL,
    PagerDutyRequestError,
    PagerDutyUnavailableError,
    ReconPagerDutyEventsHook,
)
from airflow_recon_provider.reconciliation.errors import ConfigError, ConnectionMissingError
from airflow_recon_provider.reconciliation.paging import follow_up_event, trigger_event

pytestmark = pytest.mark.timeout(60)

ALERT = {
    "status": "alert",
    "psp": "stripe",
    "window_start": "2026-11-20T10:00:00+00:00",
    "window_end": "2026-11-20T13:00:00+00:00",
    "reasons": ["lag"],
    "divergent_amount_minor": 0,
    "divergent_count": 0,
    "gateway_amount_minor": 100,
    "lag_cycles": 4,
    "reporting_currency": "BRL",
    "by_currency": {},
    "fx_rates": {},
    "unconverted_currencies": [],
    "checked_at": datetime(2026, 11, 20, 13, 5, tzinfo=UTC).isoformat(),
}


def _trigger():
    return trigger_event(ALERT, incident_id="INCIDENT-3", source="billing_gateway_divergence_watch")


def test_trigger_acknowledge_resolve_reach_the_connection_host(pagerduty):
    hook = ReconPagerDutyEventsHook()
    answer = hook.send(_trigger())
    key = "billing_gateway-reconciliation:stripe:INCIDENT-3"
    assert answer["status"] == "success" and answer["dedup_key"] == key
    assert answer["attempts"] == 1 and answer["http_status"] == 202
    for action in ("acknowledge", "resolve"):
        hook.send(follow_up_event(action, psp="stripe", incident_id="INCIDENT-3", source="t", note=""))
    (received, *_) = pagerduty.accepted("trigger")
    assert received["routing_key"] == ROUTING_KEY and received["payload"]["severity"] == "warning"
    (incident,) = pagerduty.incidents_for(key)
    assert incident.status == "resolved" and incident.events == ["trigger", "acknowledge", "resolve"]


def test_routing_key_from_the_extra_and_the_default_address(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_PAGERDUTY_RECON",
        json.dumps({"conn_type": "pagerduty_events", "extra": {"routing_key": ROUTING_KEY}}),
    )
    hook = ReconPagerDutyEventsHook()
    assert hook.get_conn() == DEFAULT_EVENTS_URL
    assert hook.integration_key == ROUTING_KEY
    ok, message = hook.test_connection()
    assert ok and message == "routing key set; events go to https://events.pagerduty.com/v2/enqueue"


def test_a_5xx_is_retried_then_accepted(monkeypatch):
    server = DemoPagerDuty(fail_status=503, fail_times=2).start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_PAGERDUTY_RECON", pagerduty_connection(server.url))
        answer = ReconPagerDutyEventsHook().send(_trigger())
        assert answer["attempts"] == 3 and answer["status"] == "success"
        assert [e["http_status"] for e in server.events] == [503, 503, 202]
    finally:
        server.stop()


def test_pagerduty_down_gives_up_after_the_bounded_attempts(pagerduty_down, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PagerDutyUnavailableError, match=r"HTTP 500.*gave up after 3 attempts") as info:
        ReconPagerDutyEventsHook().send(_trigger())
    assert len(pagerduty_down.events) == 3
    assert ROUTING_KEY not in str(info.value) and ROUTING_KEY not in caplog.text


def test_no_listener_is_unavailable(pagerduty_unreachable, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PagerDutyUnavailableError, match=r"unreachable.*gave up after 3 attempts") as info:
        ReconPagerDutyEventsHook().send(_trigger())
    assert pagerduty_unreachable in str(info.value)
    assert ROUTING_KEY not in str(info.value) and ROUTING_KEY not in caplog.text


def test_a_refused_event_is_not_retried(pagerduty, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PAGERDUTY_RECON", pagerduty_connection(pagerduty.url, key="too-short"))
    with pytest.raises(PagerDutyRequestError, match=r"HTTP 400.*routing_key' is incorrect") as info:
        ReconPagerDutyEventsHook().send(_trigger())
    assert info.value.status_code == 400 and len(pagerduty.events) == 1
    assert "too-short" not in str(info.value)


def test_missing_connection_and_missing_key_are_specific(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_PAGERDUTY_RECON", raising=False)
    with pytest.raises(ConnectionMissingError, match=r"'pagerduty_recon' is not defined.*pagerduty_events"):
        ReconPagerDutyEventsHook().send(_trigger())
    monkeypatch.setenv("AIRFLOW_CONN_PAGERDUTY_RECON", json.dumps({"conn_type": "pagerduty_events"}))
    with pytest.raises(ConfigError, match="no PagerDuty routing key"):
        ReconPagerDutyEventsHook().send(_trigger())
    monkeypatch.setenv(
        "AIRFLOW_CONN_PAGERDUTY_RECON",
        json.dumps({"conn_type": "pagerduty_events", "host": "ftp://x", "password": ROUTING_KEY}),
    )
    with pytest.raises(ConfigError, match="not an http"):
        ReconPagerDutyEventsHook().send(_trigger())
    with pytest.raises(ConfigError, match="max_attempts must be an integer of at least 1"):
        ReconPagerDutyEventsHook(max_attempts=0)
