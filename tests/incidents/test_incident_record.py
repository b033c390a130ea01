"""The incident record on real PostgreSQL: ids, one open incident per PSP, transitions,
timeline, PSP ticket, and bad input that writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from incident_support import DIVERGENT, WINDOW_END, WINDOW_START

from airflow_recon_provider.hooks.incidents import IncidentHook
from airflow_recon_provider.reconciliation import UnknownPspError, Window
from airflow_recon_provider.reconciliation.figures import Figures
from airflow_recon_provider.reconciliation.incidents import (
    IllegalTransitionError,
    IncidentAlreadyOpenError,
    IncidentExistsError,
    IncidentIdError,
    IncidentInputError,
    IncidentNotFoundError,
    IncidentState,
    IncidentStateError,
    Step,
)
from airflow_recon_provider.schema import migrate

pytestmark = pytest.mark.integration

WINDOW = Window(WINDOW_START, WINDOW_END)


def counts(db) -> tuple[int, int, int]:
    return tuple(
        db.execute(f"SELECT count(*) FROM recon.{table}").fetchone()[0]
        for table in ("incidents", "incident_events", "notifications")
    )


@pytest.fixture
def hook(divergent_psp) -> IncidentHook:
    return IncidentHook()


def open_stripe(hook: IncidentHook, **kwargs) -> str:
    return hook.open_incident(
        "stripe",
        window=WINDOW,
        reason=kwargs.pop("reason", "divergence above R$ 5.000"),
        actor=kwargs.pop("actor", "oncall"),
        run_id="manual__1",
        **kwargs,
    )


def test_migration_2_is_idempotent_and_keeps_migration_1(db):
    assert migrate(db) == []  # the template already has every migration
    versions = [r[0] for r in db.execute("SELECT version FROM recon.schema_migrations ORDER BY 1")]
    assert versions[:2] == [1, 2]
    columns = {
        r[0]
        for r in db.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'recon' AND table_name = 'incidents'"
        )
    }
    assert {"eta_resumption", "recovered_at", "communication_done_at", "closing_report_md"} <= columns
    assert db.execute("SELECT to_regclass('recon.notifications') IS NOT NULL").fetchone()[0]


def test_open_generates_ids_from_the_sequence_and_records_the_opening(hook, divergent_psp):
    summary = hook.gateway.summary("stripe", WINDOW)
    assert (
        summary.divergent_amount_minor,
        summary.divergent_count,
        summary.gateway_amount_minor,
    ) == DIVERGENT
    incident_id = open_stripe(hook, figures=summary)
    assert incident_id == "INCIDENT-1"
    incident = hook.get(incident_id)
    assert incident.state is IncidentState.OPEN
    assert incident.window == WINDOW
    # read back whole: converted figures, each currency's own, no rate needed for reais alone
    assert incident.figures == Figures.from_summary(summary)
    assert incident.figures.reporting_currency == "BRL" and incident.figures.divergence_pct == 34.0909
    assert incident.figures.by_currency["BRL"].divergent_amount_minor == 750
    (opened,) = hook.timeline(incident_id)
    assert opened.step == Step.OPENED and opened.actor == "oncall" and opened.run_id == "manual__1"
    assert opened.figures.divergence_pct == 34.0909
    assert opened.figures == Figures.from_summary(summary)
    assert opened.details["by_kind"] == {
        "missing_in_statement": {"count": 1, "amount_minor": 700},
        "amount_mismatch": {"count": 1, "amount_minor": 50},
    }
    assert opened.details["reporting_currency"] == "BRL"
    assert opened.details["by_currency"]["BRL"]["by_kind"] == opened.details["by_kind"]
    assert hook.open_incident_for("stripe").incident_id == incident_id
    assert hook.open_incident_for("adyen") is None
    assert [i.incident_id for i in hook.list_open()] == [incident_id]


def test_one_open_incident_per_psp(hook, divergent_psp):
    first = open_stripe(hook)
    before = counts(divergent_psp)
    with pytest.raises(
        IncidentAlreadyOpenError, match=f"PSP stripe already has an open incident, {first}"
    ) as err:
        open_stripe(hook, incident_id="INCIDENT-472")
    assert err.value.open_incident_id == first
    assert counts(divergent_psp) == before

    # recovered is still open for this rule: only closure frees the PSP
    hook.transition(first, "recovered", actor="oncall")
    with pytest.raises(IncidentAlreadyOpenError):
        open_stripe(hook)
    hook.transition(first, "closed", actor="oncall")
    # an id given by hand, then generated ids skip it
    assert open_stripe(hook, incident_id="INCIDENT-2") == "INCIDENT-2"
    hook.transition("INCIDENT-2", "recovered", actor="oncall")
    hook.transition("INCIDENT-2", "closed", actor="oncall")
    assert open_stripe(hook) == "INCIDENT-3"
    # another PSP is independent
    assert hook.open_incident("adyen", window=WINDOW, reason="lag", actor="watch") == "INCIDENT-4"
    hook.transition("INCIDENT-3", "recovered", actor="oncall")
    hook.transition("INCIDENT-3", "closed", actor="oncall")
    with pytest.raises(IncidentExistsError, match="INCIDENT-3 already exists"):
        open_stripe(hook, incident_id="INCIDENT-3")


def test_transitions_follow_the_runbook_and_illegal_ones_write_nothing(hook, divergent_psp):
    incident_id = open_stripe(hook)
    for target in ("closed", "open"):
        before = counts(divergent_psp)
        with pytest.raises(IllegalTransitionError, match=f"cannot move from open to {target}"):
            hook.transition(incident_id, target, actor="oncall")
        assert counts(divergent_psp) == before
        assert hook.get(incident_id).state is IncidentState.OPEN

    assert hook.transition(incident_id, "mitigating", actor="oncall").state is IncidentState.MITIGATING
    with pytest.raises(IllegalTransitionError, match="only after it recovered"):
        hook.transition(incident_id, IncidentState.CLOSED, actor="oncall")
    recovered = hook.transition(incident_id, "recovered", actor="recovery-sensor", note="2 green cycles")
    assert recovered.recovered_at is not None
    # a relapse before closure goes back to mitigating
    assert hook.transition(incident_id, "mitigating", actor="watch").state is IncidentState.MITIGATING
    hook.transition(incident_id, "recovered", actor="recovery-sensor")
    closed = hook.transition(incident_id, "closed", actor="oncall")
    assert closed.closed_at is not None and not closed.is_open

    before = counts(divergent_psp)
    for target in ("open", "mitigating", "recovered", "closed"):
        with pytest.raises(IllegalTransitionError, match="a closed incident is final"):
            hook.transition(incident_id, target, actor="oncall")
    with pytest.raises(IllegalTransitionError, match="is closed"):
        hook.set_psp_ticket(incident_id, "T-1", actor="oncall")
    with pytest.raises(IncidentStateError, match="'resolved' does not exist"):
        hook.transition(incident_id, "resolved", actor="oncall")
    assert counts(divergent_psp) == before

    states = [e.outcome for e in hook.timeline(incident_id) if e.step == Step.STATE]
    assert states == [
        "aberto → em mitigação",
        "em mitigação → recuperado: 2 green cycles",
        "recuperado → em mitigação",
        "em mitigação → recuperado",
        "recuperado → encerrado",
    ]


def test_events_ticket_and_eta_are_on_the_timeline(hook, divergent_psp):
    incident_id = open_stripe(hook)
    event_id = hook.record_event(
        incident_id,
        step="reprocess",
        outcome="3 cycles re-run, 1 failed",
        actor="alice",
        run_id="manual__2",
        figures=Figures(500, 1, 2200),
        details={"cycles": ["2026-11-20T10:00Z"], "at": datetime(2026, 11, 20, 12, tzinfo=UTC)},
    )
    hook.set_psp_ticket(incident_id, "STRIPE-8812", actor="alice")
    eta = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
    incident = hook.set_eta(incident_id, eta, actor="alice")
    assert (incident.psp_ticket, incident.eta_resumption) == ("STRIPE-8812", eta)
    # the event's figures became the incident's current divergence
    assert incident.figures == Figures(500, 1, 2200)
    assert incident.figures.divergence_pct == 22.7273
    steps = hook.timeline(incident_id)
    assert [e.step for e in steps] == [Step.OPENED, "reprocess", Step.PSP_TICKET, Step.ETA]
    reprocess = steps[1]
    assert reprocess.id == event_id
    assert reprocess.details == {"cycles": ["2026-11-20T10:00Z"], "at": "2026-11-20T12:00:00+00:00"}
    assert [e.step for e in hook.events_after(incident_id, event_id)] == [Step.PSP_TICKET, Step.ETA]


def test_bad_input_gives_specific_errors_and_writes_nothing(hook, divergent_psp):
    incident_id = open_stripe(hook)
    before = counts(divergent_psp)
    with pytest.raises(UnknownPspError, match="unknown PSP 'paypal'"):
        hook.open_incident("paypal", window=WINDOW, reason="x", actor="oncall")
    with pytest.raises(UnknownPspError, match="not a valid PSP name"):
        hook.open_incident("Stripe; DROP TABLE x", window=WINDOW, reason="x", actor="oncall")
    for bad in ("INC-1", "incident-1", "INCIDENT-", "INCIDENT-1\n", "INCIDENT-12a", 472):
        with pytest.raises(IncidentIdError, match="malformed; expected INCIDENT-<number>"):
            hook.open_incident("adyen", incident_id=bad, window=WINDOW, reason="x", actor="oncall")
    with pytest.raises(IncidentIdError):
        hook.record_event("INC-1", step="x", outcome="y", actor="z")
    with pytest.raises(IncidentNotFoundError, match="INCIDENT-999 does not exist"):
        hook.record_event("INCIDENT-999", step="x", outcome="y", actor="z")
    with pytest.raises(IncidentNotFoundError):
        hook.transition("INCIDENT-999", "mitigating", actor="z")
    with pytest.raises(IncidentInputError, match="actor is required"):
        hook.record_event(incident_id, step="x", outcome="y", actor=" ")
    with pytest.raises(IncidentInputError, match="must be an integer"):
        hook.record_event(incident_id, step="x", outcome="y", actor="z", figures=Figures(1.5, 1))  # type: ignore[arg-type]
    with pytest.raises(IncidentInputError, match="timezone-aware"):
        hook.set_eta(incident_id, datetime(2026, 11, 20, 15), actor="z")
    with pytest.raises(IncidentInputError, match="must be a Window"):
        hook.open_incident("adyen", window=("2026-11-20T10:00Z", "2026-11-20T11:00Z"), reason="x", actor="a")
    assert counts(divergent_psp) == before
