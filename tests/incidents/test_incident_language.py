"""What finance reads, in Brazilian Portuguese by default and in English when ``[recon]
language = en``: the same incident update and closing report, both languages, the same facts
(docs/i18n.md). Pure rendering, the language chosen through the Airflow configuration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from airflow_recon_provider.i18n import configured_language, language_scope
from airflow_recon_provider.reconciliation import Window
from airflow_recon_provider.reconciliation.figures import Figures
from airflow_recon_provider.reconciliation.incident_messages import (
    ClosingReport,
    IncidentUpdate,
    render_closing_report_html,
    render_closing_report_markdown,
    render_update,
)
from airflow_recon_provider.reconciliation.incidents import (
    CorrectionRecord,
    Incident,
    IncidentEvent,
    IncidentState,
    Step,
)

AT = datetime(2026, 11, 20, 11, 30, tzinfo=UTC)
WINDOW = Window(datetime(2026, 11, 20, 10, tzinfo=UTC), datetime(2026, 11, 20, 11, tzinfo=UTC))


def _incident(state: IncidentState, **kwargs) -> Incident:
    return Incident(
        incident_id="INCIDENT-472",
        psp="stripe",
        state=state,
        opened_by="watch",
        opened_at=datetime(2026, 11, 20, 11, 5, tzinfo=UTC),
        window=WINDOW,
        reason="alert billing_gateway-reconciliation (amount)",
        psp_ticket="STRIPE-8812",
        **kwargs,
    )


def _event(eid: int, step: str, minute: int, **kwargs) -> IncidentEvent:
    return IncidentEvent(
        id=eid,
        incident_id="INCIDENT-472",
        step=step,
        outcome=kwargs.pop("outcome", "x"),
        actor="alice",
        created_at=datetime(2026, 11, 20, 11, minute, tzinfo=UTC),
        **kwargs,
    )


def _update() -> IncidentUpdate:
    return IncidentUpdate(
        incident=_incident(IncidentState.MITIGATING, eta_resumption=AT + timedelta(hours=3)),
        as_of=AT,
        figures=Figures(316_400, 3, 9_000_000),
        previous_figures=Figures(750_000, 40, 9_000_000),
        since=AT - timedelta(minutes=30),
        steps=(
            _event(3, "investigation.scope", 10, outcome="stripe 10:00-11:00"),
            _event(4, "containment.pause", 12, outcome="paused"),
            _event(5, "incident.state", 14, details={"from": "open", "to": "mitigating"}),
        ),
    )


def _report() -> ClosingReport:
    closed = _incident(IncidentState.CLOSED, recovered_at=AT, closed_at=AT + timedelta(hours=1))
    corrections = tuple(
        CorrectionRecord(
            transaction_id=i,
            provider_reference=f"r{i}",
            transaction_type="capture",
            kind="status_mismatch",
            amount_minor=3164,
            requested_by="alice",
            approved_by="bob",
            run_id="run-9",
            applied_at=AT,
            currency="BRL",
        )
        for i in range(2)
    )
    events = (
        _event(1, Step.OPENED, 6, figures=Figures(750_000, 40, 9_000_000)),
        _event(2, "mitigation.reprocess", 20, outcome="3 cycles"),
    )
    return ClosingReport(
        incident=closed,
        events=events,
        corrections=corrections,
        final_figures=Figures(100, 1, 9_000_000),
        generated_at=AT + timedelta(hours=2),
    )


def _render(monkeypatch: pytest.MonkeyPatch, language: str | None) -> tuple[str, str, str, str]:
    if language is None:
        monkeypatch.delenv("AIRFLOW__RECON__LANGUAGE", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__RECON__LANGUAGE", language)
    with language_scope():
        update = render_update(_update())
        report = _report()
        return (
            update.subject,
            update.text,
            render_closing_report_markdown(report),
            render_closing_report_html(report),
        )


def test_the_same_update_and_closing_report_in_portuguese_by_default_and_in_english(monkeypatch):
    subject_pt, update_pt, report_pt, html_pt = _render(monkeypatch, None)
    assert configured_language() == "pt_BR"
    subject_en, update_en, report_en, html_en = _render(monkeypatch, "en")
    assert configured_language() == "en"

    # the update: subject, fields, the runbook's step names, money in the language's format
    assert subject_pt == (
        "[INCIDENT-472] atualização da reconciliação de stripe 2026-11-20 11:30 UTC - 3,5156% (R$ 3.164,00) "
        "divergentes"
    )
    assert subject_en == (
        "[INCIDENT-472] stripe reconciliation update 2026-11-20 11:30 UTC - 3.5156% (BRL 3,164.00) divergent"
    )
    for text, words in (
        (
            update_pt,
            (
                "R$ 3.164,00 divergentes em 3 transações de R$ 90.000,00 processados pelo gateway",
                "Investigação — Validar Escopo",
                "Ações de Contenção — Reconciliação automática pausada",
                "Mitigação — Estado: aberto → em mitigação",
                "Passos executados desde a última atualização",
                "Previsão de retomada",
            ),
        ),
        (
            update_en,
            (
                "BRL 3,164.00 divergent in 3 transactions of BRL 90,000.00 processed by the gateway",
                "Investigation — Validate Scope",
                "Containment Actions — Automatic reconciliation paused",
                "Mitigation — State: open → mitigating",
                "Steps executed since the last update",
                "Estimated resumption",
            ),
        ),
    ):
        for word in words:
            assert word in text, (word, text)
        # people never read the internal step ids, nor bare minor units
        assert "investigation.scope" not in text and "containment.pause" not in text
        assert "316400" not in text and "minor units" not in text

    # the closing report: its headings, the corrections in their currency, the states in words
    for report, html, words, lang in (
        (
            report_pt,
            html_pt,
            ("## O que foi feito", "## Quem aprovou o quê", "| Estado | encerrado |", "R$ 31,64", "pt-BR"),
            "pt-BR",
        ),
        (
            report_en,
            html_en,
            ("## What was done", "## Who approved what", "| State | closed |", "BRL 31.64", "en"),
            "en",
        ),
    ):
        for word in words[:-1]:
            assert word in report, (word, report)
        assert f'<html lang="{lang}">' in html
        assert "mitigation.reprocess" not in report and "3164" not in report
    assert "Mitigação — Reprocessamento" in report_pt and "Mitigation — Reprocessing" in report_en
    assert "status divergente" in report_pt and "different status" in report_en


def test_an_unknown_configured_language_is_said_not_guessed(monkeypatch):
    monkeypatch.setenv("AIRFLOW__RECON__LANGUAGE", "fr")
    with pytest.raises(ValueError, match="language 'fr' is not available; choose one of pt-BR, en"):
        configured_language()
