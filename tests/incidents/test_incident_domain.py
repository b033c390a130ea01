"""The pure incident domain: states and transitions, ids, figures, and the renderers (text,
HTML, Slack, closing report) — no Airflow, no database."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta

import pytest

from airflow_recon_provider.reconciliation import Window
from airflow_recon_provider.reconciliation.figures import Figures
from airflow_recon_provider.reconciliation.incident_messages import (
    ClosingReport,
    ContainmentNotice,
    IncidentUpdate,
    MessageKind,
    render_closing_report_html,
    render_closing_report_markdown,
    render_containment,
    render_update,
)
from airflow_recon_provider.reconciliation.incidents import (
    TRANSITIONS,
    CorrectionRecord,
    IllegalTransitionError,
    Incident,
    IncidentEvent,
    IncidentIdError,
    IncidentInputError,
    IncidentState,
    Step,
    check_incident_id,
    check_transition,
    format_incident_id,
    incident_number,
    missed_slots,
)

AT = datetime(2026, 11, 20, 11, 30, tzinfo=UTC)
WINDOW = Window(datetime(2026, 11, 20, 10, tzinfo=UTC), datetime(2026, 11, 20, 11, tzinfo=UTC))


def incident(state: IncidentState = IncidentState.MITIGATING, **kwargs) -> Incident:
    return Incident(
        incident_id="INCIDENT-472",
        psp="stripe",
        state=state,
        opened_by="oncall",
        opened_at=datetime(2026, 11, 20, 11, 5, tzinfo=UTC),
        window=WINDOW,
        **{"reason": "divergence above R$ 5.000", **kwargs},
    )


def event(eid: int, step: str, outcome: str, minute: int, **kwargs) -> IncidentEvent:
    return IncidentEvent(
        id=eid,
        incident_id="INCIDENT-472",
        step=step,
        outcome=outcome,
        actor=kwargs.pop("actor", "alice"),
        created_at=datetime(2026, 11, 20, 11, minute, tzinfo=UTC),
        **kwargs,
    )


def test_transitions_are_exactly_the_table():
    allowed = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert allowed == {
        (IncidentState.OPEN, IncidentState.MITIGATING),
        (IncidentState.OPEN, IncidentState.RECOVERED),
        (IncidentState.MITIGATING, IncidentState.RECOVERED),
        (IncidentState.RECOVERED, IncidentState.MITIGATING),
        (IncidentState.RECOVERED, IncidentState.CLOSED),
    }
    for current, target in itertools.product(IncidentState, repeat=2):
        if (current, target) in allowed:
            check_transition("INCIDENT-1", current, target)
        else:
            with pytest.raises(IllegalTransitionError, match=f"from {current.value} to {target.value}"):
                check_transition("INCIDENT-1", current, target)


def test_incident_ids():
    assert check_incident_id("INCIDENT-472") == "INCIDENT-472"
    assert incident_number("INCIDENT-472") == 472
    assert format_incident_id(473) == "INCIDENT-473"
    for bad in ("INCIDENT-472 ", "INCIDENT-4x", "incident-472", "INCIDENT-" + "9" * 19, None, 472):
        with pytest.raises(IncidentIdError):
            check_incident_id(bad)


def test_figures_are_integers_and_the_percentage_is_derived():
    figures = Figures(750, 2, 2200)
    assert figures.divergence_pct == 34.0909
    assert (
        figures.describe()
        == "34,0909% — R$ 7,50 divergentes em 2 transações de R$ 22,00 processados pelo gateway"
    )
    assert Figures.from_dict(figures.as_dict()) == figures
    assert Figures(5, 1, 0).pct_text == "n/d"
    for bad in (7.5, True, "750"):
        with pytest.raises(IncidentInputError):
            Figures(bad, 1)  # type: ignore[arg-type]


def test_update_in_text_html_and_slack_say_the_same():
    update = IncidentUpdate(
        incident=incident(psp_ticket="STRIPE-<8812>", eta_resumption=AT + timedelta(hours=3)),
        as_of=AT,
        figures=Figures(90_000, 9, 9_000_000),
        previous_figures=Figures(750_000, 40, 9_000_000),
        since=AT - timedelta(minutes=30),
        steps=(
            event(3, "reprocess", "3 cycles re-run, 1 <failed>", 12, figures=Figures(120_000, 12, 9_000_000)),
            event(4, Step.PSP_TICKET, "PSP ticket STRIPE-<8812>", 20),
        ),
        missed=(AT - timedelta(hours=1),),
    )
    message = render_update(update)
    assert message.kind is MessageKind.UPDATE
    assert message.subject == (
        "[INCIDENT-472] atualização da reconciliação de stripe 2026-11-20 11:30 UTC - 1,0000% (R$ 900,00) "
        "divergentes"
    )
    assert re.search(
        r"Divergência agora: +1,0000% — R\$ 900,00 divergentes em 9 transações de R\$ 90\.000,00",
        message.text,
    )
    assert "caiu de 8,3333% (R$ 7.500,00) na atualização anterior (-R$ 6.600,00)" in message.text
    assert "Previsão de retomada: 2026-11-20 14:30 UTC" in message.text
    assert "Passos executados desde a última atualização (2026-11-20 11:00 UTC)" in message.text
    assert "2026-11-20 11:12 UTC  reprocess: 3 cycles re-run" in message.text
    # a step id the runbook table knows is shown by the runbook's names, never as the id
    assert "Comunicação — Ticket do PSP registrado" in message.text
    assert Step.PSP_TICKET not in message.text
    assert "As atualizações previstas para 2026-11-20 10:30 UTC não foram entregues" in message.text
    # HTML: same facts, escaped
    assert "STRIPE-&lt;8812&gt;" in message.html and "<8812>" not in message.html
    assert "1 &lt;failed&gt;" in message.html
    # Slack: mrkdwn escaped, within Slack's limits
    assert all(len(b["fields"]) <= 10 for b in message.slack_blocks if "fields" in b)
    text = str(message.slack_blocks)
    assert "STRIPE-&lt;8812&gt;" in text and "1 &lt;failed&gt;" in text
    assert message.slack_text == message.subject


def test_no_steps_normalized_and_long_slack_sections():
    quiet = render_update(IncidentUpdate(incident=incident(), as_of=AT, figures=None))
    assert "Nenhum passo novo desde a última atualização." in quiet.text
    assert re.search(r"Divergência agora: +indisponível", quiet.text)
    assert "desde a abertura do incidente" in quiet.text

    many = tuple(event(i, "reprocess", "x" * 200, 10) for i in range(40))
    done = render_update(
        IncidentUpdate(
            incident=incident(IncidentState.RECOVERED, recovered_at=AT),
            as_of=AT,
            figures=Figures(100, 1, 9_000_000),
            steps=many,
        )
    )
    assert done.kind is MessageKind.NORMALIZED
    assert "reconciliação de stripe normalizada" in done.subject
    assert "Próxima atualização" not in done.text and "esta é a última atualização" in done.text
    assert all(
        len(b["text"]["text"]) <= 3000 for b in done.slack_blocks if b["type"] == "section" and "text" in b
    )


def test_containment_notice():
    message = render_containment(
        ContainmentNotice(psp="stripe", paused_at=AT, paused_by="oncall", reason="statements incomplete")
    )
    assert (
        message.subject
        == "[billing gateway] reconciliação de stripe pausada - previsão de retomada: ainda sem previsão"
    )
    assert "A reconciliação automática de stripe está congelada" in message.text
    assert "(runbook: Ações de Contenção)" in message.text
    assert re.search(r"Pausada por: +oncall", message.text)


def test_missed_slots():
    t = datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert missed_slots(t, t + timedelta(minutes=30)) == []
    assert missed_slots(t, t + timedelta(minutes=90)) == [
        t + timedelta(minutes=30),
        t + timedelta(minutes=60),
    ]
    # the first update after opening at 10:05: 10:30 was due only if the run is later
    opened = t + timedelta(minutes=5)
    assert missed_slots(opened, t + timedelta(minutes=30)) == []
    assert missed_slots(opened, t + timedelta(minutes=60)) == [t + timedelta(minutes=30)]
    assert missed_slots(None, t) == [] and missed_slots(t, t) == []
    assert len(missed_slots(t - timedelta(days=30), t)) == 48


def test_closing_report_markdown_and_html():
    closed = incident(
        IncidentState.CLOSED,
        recovered_at=AT + timedelta(hours=1),
        closed_at=AT + timedelta(hours=2),
        psp_ticket="STRIPE-8812",
        reason="a | pipe",
    )
    events = (
        event(
            1,
            Step.OPENED,
            "opened",
            5,
            figures=Figures(750_000, 40, 9_000_000),
            details={
                "reporting_currency": "BRL",
                "by_kind": {"amount_mismatch": {"count": 40, "amount_minor": 750_000}},
            },
        ),
        event(
            2,
            "correction.apply",
            "40 rows corrected",
            40,
            details={"approved_by": "bob", "requested_by": "alice"},
        ),
        event(3, Step.UPDATE_MISSED, "1 finance update(s) due at 12:00 were never attempted", 50),
    )
    corrections = tuple(
        CorrectionRecord(
            transaction_id=i,
            provider_reference=f"r{i}",
            transaction_type="capture",
            kind="amount_mismatch",
            amount_minor=100,
            requested_by="alice",
            approved_by="bob",
            run_id="run-9",
            applied_at=AT,
            currency="BRL",
        )
        for i in range(205)
    )
    report = ClosingReport(
        incident=closed,
        events=events,
        corrections=corrections,
        final_figures=Figures(100, 1, 9_000_000),
        generated_at=AT + timedelta(hours=3),
        deliveries={"email": {"sent": 5, "superseded": 1}, "slack": {"sent": 6}},
    )
    markdown = render_closing_report_markdown(report)
    assert markdown.startswith("# INCIDENT-472 — reconciliação do billing gateway, PSP stripe\n")
    assert "| Motivo | a \\| pipe |" in markdown
    assert "| Duração | 2h 25min |" in markdown
    assert "| valor divergente | 40 | R$ 7.500,00 |" in markdown
    assert "| alice | bob | run-9 | 205 | R$ 205,00 | valor divergente |" in markdown
    assert "… e mais 5 transações corrigidas" in markdown
    assert "correction.apply aprovada por bob (solicitada por alice)" in markdown
    assert "- e-mail: 5 enviado, 1 substituído" in markdown
    assert "never attempted" in markdown
    assert "0,0011% — R$ 1,00 divergentes em 1 transação" in markdown
    assert "caiu de 8,3333% (R$ 7.500,00) na abertura" in markdown
    html = render_closing_report_html(report)
    assert html.startswith("<!DOCTYPE html>") and "<h2>Quem aprovou o quê</h2>" in html
    assert '<html lang="pt-BR">' in html
    assert "a | pipe" in html
    draft = render_closing_report_markdown(
        ClosingReport(incident=incident(), events=(), corrections=(), final_figures=None, generated_at=AT)
    )
    assert "**Rascunho: o incidente ainda está em mitigação.**" in draft
    assert "Nenhuma transação foi corrigida." in draft and "Os números finais não estão disponíveis." in draft
