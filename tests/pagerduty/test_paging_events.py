"""What the alert says in PagerDuty, without Airflow or a database: the dedup key, the
severity mapping, the custom details per currency and in reais, and the event body the hook
posts (the pagerduty provider's ``prepare_event_data``) checked by the Events API v2
stand-in's schema."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from airflow_recon_provider.devtools.pagerduty_stand_in import validate_event
from airflow_recon_provider.reconciliation.detection import Detection
from airflow_recon_provider.reconciliation.incidents import IncidentEvent
from airflow_recon_provider.reconciliation.kinds import DivergenceKind
from airflow_recon_provider.reconciliation.money import FxRate
from airflow_recon_provider.reconciliation.paging import (
    FINANCE_REPORT_SEVERITY,
    PAGING_STEP,
    SUMMARY_MAX,
    PagingAction,
    PagingError,
    dedup_key,
    finance_report_event,
    follow_up_event,
    paging_state,
    run_grid_url,
    severity_for,
    trigger_event,
)
from airflow_recon_provider.reconciliation.report import CurrencyFigures, DivergenceSummary, KindTotal
from airflow_recon_provider.reconciliation.window import Window

ROUTING_KEY = "R0uTiNgKeY-s3cr3t-pagerduty-0032"
WINDOW = Window(datetime(2026, 11, 20, 10, tzinfo=UTC), datetime(2026, 11, 20, 13, tzinfo=UTC))


def _alert(*, lag: int | None = 3, brl: int = 10_419_755, eur_rate: bool = True) -> dict:
    summary = DivergenceSummary(
        psp="stripe",
        window=WINDOW,
        by_currency={
            "BRL": CurrencyFigures(
                "BRL", 700, 90_000_000, {DivergenceKind.STATUS_MISMATCH: KindTotal(16, brl)}
            ),
            "EUR": CurrencyFigures(
                "EUR", 21, 2_000_000, {DivergenceKind.AMOUNT_MISMATCH: KindTotal(3, 962_910)}
            ),
        },
        lag_cycles=lag,
        fx_rates={"EUR": FxRate("EUR", Decimal("6.2875"), datetime(2026, 11, 19, tzinfo=UTC), "BCB PTAX")}
        if eur_rate
        else {},
    )
    return Detection(summary, None, datetime(2026, 11, 20, 13, 5, tzinfo=UTC)).event_payload()


def _hook_body(event) -> dict:
    """The body the hook posts, built without a connection (the routing key set by hand)."""
    from airflow_recon_provider.hooks.pagerduty import ReconPagerDutyEventsHook

    hook = ReconPagerDutyEventsHook("pagerduty_recon")
    hook.integration_key = ROUTING_KEY
    return hook.event_body(event)


@pytest.mark.parametrize(
    ("reasons", "severity"),
    [
        (["amount"], "error"),
        (["lag"], "warning"),
        (["fx_rate_missing"], "warning"),
        (["amount", "lag"], "error"),
        (["fx_rate_missing", "lag"], "warning"),
        (["amount", "fx_rate_missing", "lag"], "error"),
    ],
)
def test_severity_is_the_highest_of_the_reasons(reasons, severity):
    assert severity_for(reasons) == severity


def test_an_unknown_or_missing_reason_is_refused():
    with pytest.raises(PagingError, match="unknown alert reason"):
        severity_for(["amount", "boom"])
    with pytest.raises(PagingError, match="no reason"):
        severity_for([])


def test_dedup_key_names_the_alert_psp_and_incident():
    assert dedup_key("stripe", "INCIDENT-472") == "billing_gateway-reconciliation:stripe:INCIDENT-472"
    with pytest.raises(Exception, match="not a valid PSP name"):
        dedup_key("Stripe; drop", "INCIDENT-1")
    with pytest.raises(Exception, match="INCIDENT"):
        dedup_key("stripe", "472")


def test_trigger_carries_the_divergence_per_currency_and_in_reais():
    event = trigger_event(
        _alert(),
        incident_id="INCIDENT-7",
        source="billing_gateway_divergence_watch",
        dashboard_url="http://airflow.example:8080/recon/",
        run_url=run_grid_url(
            "http://airflow.example:8080/", "billing_gateway_remediation", "watch__INCIDENT-7"
        ),
    )
    assert event.action is PagingAction.TRIGGER
    assert event.dedup_key == "billing_gateway-reconciliation:stripe:INCIDENT-7"
    assert event.severity == "error"  # amount and lag
    details = event.custom_details
    assert details["reasons"] == ["amount", "lag"]
    total = details["divergence"]["total_in_reporting_currency"]
    # EUR 9.629,10 at 6,2875 = R$ 60.542,97; plus R$ 104.197,55
    assert (total["amount_minor"], total["currency"], total["text"]) == (16_474_052, "BRL", "R$ 164.740,52")
    assert total["count"] == 19 and total["converted"] is True
    per = details["divergence"]["by_currency"]
    assert (per["BRL"]["amount_minor"], per["BRL"]["currency"], per["BRL"]["text"]) == (
        10_419_755,
        "BRL",
        "R$ 104.197,55",
    )
    assert (per["EUR"]["amount_minor"], per["EUR"]["text"], per["EUR"]["count"]) == (
        962_910,
        "EUR 9.629,10",
        3,
    )
    assert per["EUR"]["converted"] is True and per["BRL"]["converted"] is False
    assert details["divergence"]["fx_rates"] == [
        "1 EUR = 6,2875 BRL (a partir de 2026-11-19 00:00 UTC, BCB PTAX)"
    ]
    assert details["lag"] == {"cycles": 3, "text": "3 ciclos de atraso"}
    assert details["reasons"] == ["amount", "lag"]
    assert details["reasons_text"] == "valor acima do limite, reconciliação atrasada"
    assert details["window"]["start"] == "2026-11-20T10:00:00+00:00"
    assert details["window"]["text"] == "2026-11-20 10:00 UTC a 2026-11-20 13:00 UTC"
    assert [link["href"] for link in event.links] == [
        "http://airflow.example:8080/recon/",
        "http://airflow.example:8080/dags/billing_gateway_remediation/runs/watch__INCIDENT-7",
    ]
    assert "stripe" in event.summary and "INCIDENT-7" in event.summary and "R$ 164.740,52" in event.summary
    # what on-call reads first in PagerDuty: pt-BR by default, amounts with their currency
    assert event.summary.startswith("billing_gateway-reconciliation: stripe — ")
    assert event.summary.endswith(
        "divergentes em 19 transações, atraso: 3 ciclos de atraso "
        "(valor acima do limite, reconciliação atrasada) — INCIDENT-7"
    )
    assert [link["text"] for link in event.links] == [
        "Reconciliação Financeira (dashboard)",
        "Execução da remediação (grade do Airflow)",
    ]

    body = _hook_body(event)
    assert validate_event(body) == []
    assert body["event_action"] == "trigger" and body["routing_key"] == ROUTING_KEY
    assert body["payload"]["severity"] == "error" and body["payload"]["component"] == "stripe"
    assert body["payload"]["custom_details"] == details


def test_a_missing_fx_rate_pages_a_warning_and_names_the_currency():
    event = trigger_event(_alert(lag=0, brl=1_000, eur_rate=False), incident_id="INCIDENT-8", source="watch")
    assert event.custom_details["reasons"] == ["fx_rate_missing"]
    assert event.severity == "warning"
    divergence = event.custom_details["divergence"]
    assert divergence["unconverted_currencies"] == ["EUR"]
    assert "EUR 9.629,10 não incluídos" in divergence["not_converted"]
    assert validate_event(_hook_body(event)) == []


def test_the_summary_is_cut_to_pagerduty_limit():
    alert = {**_alert(), "psp": "p" * 60}
    event = trigger_event(alert, incident_id="INCIDENT-" + "9" * 18, source="x" * 10)
    long = type(event)(**{**event.__dict__, "summary": "s" * 5000})
    assert len(long.summary) == SUMMARY_MAX and long.summary.endswith("…")
    assert validate_event(_hook_body(long)) == []


def test_acknowledge_and_resolve_carry_only_the_dedup_key():
    for action in ("acknowledge", "resolve"):
        event = follow_up_event(
            action, psp="stripe", incident_id="INCIDENT-7", source="remediation", note="x"
        )
        body = _hook_body(event)
        assert body == {
            "routing_key": ROUTING_KEY,
            "event_action": action,
            "dedup_key": "billing_gateway-reconciliation:stripe:INCIDENT-7",
        }
        assert validate_event(body) == []
    with pytest.raises(PagingError, match="trigger"):
        follow_up_event("trigger", psp="stripe", incident_id="INCIDENT-7", source="r", note="")
    with pytest.raises(PagingError, match="must be one of"):
        follow_up_event("snooze", psp="stripe", incident_id="INCIDENT-7", source="r", note="")


def test_the_stand_in_refuses_what_the_events_api_refuses():
    good = _hook_body(trigger_event(_alert(), incident_id="INCIDENT-7", source="watch"))
    cases = {
        "Length of 'routing_key' is incorrect": {**good, "routing_key": "short"},
        "'event_action' is invalid": {**good, "event_action": "snooze"},
        "'payload.severity' is invalid": {**good, "payload": {**good["payload"], "severity": "fatal"}},
        "'payload.summary' is missing": {**good, "payload": {**good["payload"], "summary": ""}},
        "'payload.source' is missing": {
            **good,
            "payload": {k: v for k, v in good["payload"].items() if k != "source"},
        },
        "Length of 'payload.summary' is incorrect": {
            **good,
            "payload": {**good["payload"], "summary": "s" * 1025},
        },
        "'dedup_key' is required": {"routing_key": ROUTING_KEY, "event_action": "resolve"},
        "'links[0].href' is missing": {**good, "links": [{"text": "no href"}]},
        "'colour' is not a valid field": {**good, "colour": "red"},
    }
    for expected, event in cases.items():
        errors = validate_event(event)
        assert any(expected in e for e in errors), (expected, errors)


def _event(n: int, action: str, status: str, severity: str | None = None) -> IncidentEvent:
    details = {"event_action": action, "status": status}
    if severity:
        details["severity"] = severity
    return IncidentEvent(
        id=n,
        incident_id="INCIDENT-7",
        step=PAGING_STEP,
        outcome="",
        actor="a",
        created_at=datetime(2026, 11, 20, tzinfo=UTC),
        details=details,
    )


def test_follow_ups_only_for_a_delivered_trigger_and_once():
    ack, resolve = PagingAction.ACKNOWLEDGE, PagingAction.RESOLVE
    assert "no PagerDuty alert" in paging_state([]).needs(ack)
    assert "no PagerDuty alert" in paging_state([_event(1, "trigger", "failed")]).needs(resolve)
    triggered = [_event(1, "trigger", "sent")]
    assert paging_state(triggered).needs(ack) is None
    acked = [*triggered, _event(2, "acknowledge", "sent")]
    assert "already acknowledged" in paging_state(acked).needs(ack)
    assert paging_state(acked).needs(resolve) is None
    # an acknowledge that failed is sent again
    assert paging_state([*triggered, _event(2, "acknowledge", "failed")]).needs(ack) is None
    resolved = [*acked, _event(3, "resolve", "sent")]
    assert "already resolved" in paging_state(resolved).needs(resolve)
    assert "already resolved" in paging_state(resolved).needs(ack)
    # a trigger after a resolve is a new PagerDuty incident: it can be acknowledged again
    assert paging_state([*resolved, _event(4, "trigger", "sent")]).needs(ack) is None
    assert paging_state(resolved).needs(PagingAction.TRIGGER) is None


REPORT = {
    "psp": "stripe",
    "window_start": "2026-11-20T10:00:00+00:00",
    "window_end": "2026-11-20T13:00:00+00:00",
    "finance_ticket": "FIN-88",
    "description": "x" * 600,
    "incident_id": "INCIDENT-7",
    "incident_action": "opened",
    "reported_by": "finance",
    "dry_run": {"run_id": "finance_report__FIN-88__r1"},
}


def test_a_finance_report_is_an_info_trigger_with_the_incidents_key():
    event = finance_report_event(REPORT, source="billing_gateway_finance_report.page_oncall")
    assert event.severity == FINANCE_REPORT_SEVERITY == "info"
    assert event.dedup_key == dedup_key("stripe", "INCIDENT-7") and event.action is PagingAction.TRIGGER
    details = event.custom_details
    assert details["finance_ticket"] == "FIN-88" and details["reasons"] == ["finance_report"]
    assert len(details["description"]) == 500 and details["description"].endswith("…")
    body = {"routing_key": ROUTING_KEY, "event_action": "trigger", "dedup_key": event.dedup_key,
            "payload": {"summary": event.summary, "source": event.source, "severity": event.severity,
                        "class": event.class_type, "custom_details": dict(details)}}  # fmt: skip
    assert validate_event(body) == []
    with pytest.raises(PagingError, match="has no ticket"):
        finance_report_event({**REPORT, "finance_ticket": " "}, source="s")
    with pytest.raises(PagingError, match="no readable window"):
        finance_report_event({**REPORT, "window_end": "tomorrow"}, source="s")


def test_the_severity_that_opened_the_alert_decides_whether_a_breach_supersedes_it():
    low = [_event(1, "trigger", "sent", "info")]
    assert paging_state(low).open and paging_state(low).severity == "info"
    assert paging_state(low).superseded_by("error") and paging_state(low).superseded_by("warning")
    assert not paging_state(low).superseded_by("info")
    # a higher trigger added to the open low alert does not raise its urgency (PagerDuty keeps it)
    assert paging_state([*low, _event(2, "trigger", "sent", "error")]).severity == "info"
    # an error alert: a report's info trigger is added to it, nothing superseded
    high = [_event(1, "trigger", "sent", "error"), _event(2, "trigger", "sent", "info")]
    assert paging_state(high).severity == "error" and not paging_state(high).superseded_by("error")
    # resolved, failed or never sent: nothing open to supersede
    assert not paging_state([*low, _event(2, "resolve", "sent")]).superseded_by("error")
    assert not paging_state([_event(1, "trigger", "failed", "info")]).superseded_by("error")
    assert not paging_state([]).open


def test_the_summary_and_details_in_english():
    """``[recon] language = en`` (the operators render in language_scope): the same event's
    words in English, the amounts in the English number format, the codes unchanged."""
    from airflow_recon_provider.reconciliation.i18n import use_language

    with use_language("en"):
        event = trigger_event(
            _alert(), incident_id="INCIDENT-7", source="watch", dashboard_url="http://x/recon/"
        )
        ack = follow_up_event("acknowledge", psp="stripe", incident_id="INCIDENT-7", source="s", note="n")
    assert event.summary.startswith("billing_gateway-reconciliation: stripe — ")
    assert "R$" not in event.summary and "BRL 164,740.52" in event.summary
    assert event.summary.endswith(
        "divergent in 19 transactions, lag: 3 cycles behind (amount above the threshold, "
        "reconciliation behind) — INCIDENT-7"
    )
    details = event.custom_details
    assert details["lag"]["text"] == "3 cycles behind" and details["reasons"] == ["amount", "lag"]
    assert details["divergence"]["by_currency"]["EUR"]["text"] == "EUR 9,629.10"
    assert event.links[0]["text"] == "Reconciliação Financeira (dashboard)"
    assert ack.summary == "billing_gateway-reconciliation: stripe — INCIDENT-7 acknowledged: n"
