"""Money in its own currency on the incident record and in what finance reads (DESIGN 3a,
issue 13): a window with BRL, EUR, JPY (rates loaded) and USD (no rate) divergences. Every
surface — e-mail text and HTML, Slack, the update subject, the closing report in markdown
and HTML — shows each currency's figure in that currency (pt-BR format, JPY without
decimals), the converted total labelled as converted with its rates, USD named as not
converted, and never a figure that adds minor units of different currencies. The figures
round-trip through JSON (XCom, ``recon.notifications``) and through the database."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from incident_support import WINDOW_END, WINDOW_START

from airflow_recon_provider.reconciliation import Window
from airflow_recon_provider.reconciliation.detection import Detection
from airflow_recon_provider.reconciliation.figures import CurrencyFigure, Figures
from airflow_recon_provider.reconciliation.incident_messages import (
    ClosingReport,
    ContainmentNotice,
    IncidentUpdate,
    render_closing_report_html,
    render_closing_report_markdown,
    render_containment,
    render_update,
)
from airflow_recon_provider.reconciliation.incidents import (
    CorrectionRecord,
    Incident,
    IncidentEvent,
    IncidentInputError,
    IncidentState,
    Step,
)
from airflow_recon_provider.reconciliation.kinds import DivergenceKind
from airflow_recon_provider.reconciliation.money import FxRate
from airflow_recon_provider.reconciliation.report import CurrencyFigures, DivergenceSummary, KindTotal
from airflow_recon_provider.remediation import _describe_recovery

WINDOW = Window(WINDOW_START, WINDOW_END)
AT = datetime(2026, 11, 20, 11, 30, tzinfo=UTC)
RATE_FROM = datetime(2026, 11, 20, 9, tzinfo=UTC)
EUR_RATE = FxRate("EUR", Decimal("6.25"), RATE_FROM, "BCB PTAX")
JPY_RATE = FxRate("JPY", Decimal("0.0375"), RATE_FROM, "BCB PTAX")

# divergent amounts, each in its own minor units (JPY has no decimals)
BRL, EUR, USD, JPY = 10_417_521, 961_980, 1_200, 1_234
# converted once per currency, half-even: 104175.21 + 9619.80 * 6.25 + 1234 * 0.0375 (46.275 -> 46.28)
CONVERTED = 10_417_521 + 6_012_375 + 4_628


def mixed_summary(*, brl: int = BRL) -> DivergenceSummary:
    K = DivergenceKind
    return DivergenceSummary(
        psp="stripe",
        window=WINDOW,
        by_currency={
            "BRL": CurrencyFigures(
                "BRL", 120, 90_000_000, {K.STATUS_MISMATCH: KindTotal(11, brl)} if brl else {}
            ),
            "EUR": CurrencyFigures("EUR", 10, 2_000_000, {K.STATUS_MISMATCH: KindTotal(1, EUR)}),
            "USD": CurrencyFigures("USD", 3, 50_000, {K.AMOUNT_MISMATCH: KindTotal(1, USD)}),
            "JPY": CurrencyFigures("JPY", 5, 900_000, {K.MISSING_IN_STATEMENT: KindTotal(2, JPY)}),
        },
        fx_rates={"EUR": EUR_RATE, "JPY": JPY_RATE},
    )


def forbidden_sums() -> set[str]:
    """Every way a sum of minor units of two or more currencies could be printed."""
    amounts = {"BRL": BRL, "EUR": EUR, "USD": USD, "JPY": JPY}
    texts = set()
    for n in range(2, len(amounts) + 1):
        for combo in itertools.combinations(amounts.values(), n):
            total = sum(combo)
            units, cents = divmod(total, 100)
            texts |= {
                str(total),
                f"{total:,}",
                f"{total:,}".replace(",", "."),
                f"{units:,}.{cents:02d}",
                f"{units:,}".replace(",", ".") + f",{cents:02d}",
            }
    return texts


def assert_per_currency(text: str) -> None:
    assert "R$ 104.175,21" in text  # BRL with its symbol, pt-BR format
    assert "EUR 9.619,80" in text
    assert "JPY 1.234" in text and "JPY 1.234," not in text  # no decimals for yen
    assert "R$ 164.345,24 convertido" in text or "R$ 164.345,24 divergentes (convertidos para BRL)" in text
    assert "1 EUR = 6,25 BRL" in text and "1 JPY = 0,0375 BRL" in text
    assert "sem taxa de câmbio: USD 12,00 não incluídos" in text
    for raw in forbidden_sums():
        assert raw not in text, raw


def incident(state: IncidentState = IncidentState.MITIGATING, **kwargs) -> Incident:
    return Incident(
        incident_id="INCIDENT-472",
        psp="stripe",
        state=state,
        opened_by="watch",
        opened_at=datetime(2026, 11, 20, 11, 5, tzinfo=UTC),
        window=WINDOW,
        reason="alert billing_gateway-reconciliation (amount,fx_rate_missing)",
        **kwargs,
    )


def test_converted_total_is_exact_and_never_a_sum_of_minor_units():
    summary = mixed_summary()
    assert summary.divergent_amount_minor == CONVERTED
    figures = Figures.from_summary(summary)
    assert figures.divergent_amount_minor == CONVERTED
    assert figures.reporting_currency == "BRL"
    assert figures.unconverted_currencies == ("USD",)
    assert set(figures.fx_rates) == {"EUR", "JPY"}
    assert figures.by_currency["JPY"] == CurrencyFigure("JPY", 2, JPY, 5, 900_000)
    assert figures.several_currencies and figures.converted
    assert figures.describe() == (
        "15,5226% — R$ 164.345,24 divergentes (convertidos para BRL) em 15 transações de "
        "R$ 1.058.750,00 processados pelo gateway (convertidos para BRL); por moeda: "
        "R$ 104.175,21 em 11 transações; EUR 9.619,80 em 1 transação; "
        "JPY 1.234 em 2 transações; USD 12,00 em 1 transação; "
        "taxas: 1 EUR = 6,25 BRL (a partir de 2026-11-20 09:00 UTC, BCB PTAX); "
        "1 JPY = 0,0375 BRL (a partir de 2026-11-20 09:00 UTC, BCB PTAX); "
        "sem taxa de câmbio: USD 12,00 não incluídos"
    )
    assert figures.short() == (
        "15,5226% (R$ 104.175,21; EUR 9.619,80; JPY 1.234 — R$ 164.345,24 convertido a "
        "1 EUR = 6,25 BRL e 1 JPY = 0,0375 BRL; sem taxa de câmbio: USD 12,00 não incluídos)"
    )
    assert_per_currency(figures.describe())
    # reais alone: nothing converted, nothing said about rates
    alone = Figures.from_summary(
        DivergenceSummary.in_one_currency(
            psp="stripe",
            window=WINDOW,
            gateway_count=3,
            gateway_amount_minor=2200,
            by_kind={DivergenceKind.AMOUNT_MISMATCH: KindTotal(2, 750)},
        )
    )
    assert not alone.several_currencies
    assert (
        alone.describe()
        == "34,0909% — R$ 7,50 divergentes em 2 transações de R$ 22,00 processados pelo gateway"
    )
    assert alone.short() == "34,0909% (R$ 7,50)"


def test_figures_round_trip_through_json_and_from_every_payload():
    summary = mixed_summary()
    figures = Figures.from_summary(summary)
    assert Figures.from_dict(json.loads(json.dumps(figures.as_dict()))) == figures
    # what the watch receives (the alert payload) and a summary's JSON give the same figures
    payload = Detection(summary=summary, open_incident_id=None, checked_at=AT).event_payload()
    assert Figures.coerce(json.loads(json.dumps(payload))) == figures
    assert Figures.from_dict(summary.as_dict()) == figures
    assert Figures.coerce(summary) == figures
    # the database columns and their currency_figures
    stored = json.loads(json.dumps(figures.currency_figures()))
    assert stored["currency"] == "BRL" and stored["fx_rates"]["EUR"]["rate"] == "6.25"
    assert Figures.from_columns(CONVERTED, 15, Decimal("15.5226"), stored) == figures
    # recorded before per-currency figures: no currency is assumed
    legacy = Figures.from_columns(750, 2, Decimal("34.0909"), None)
    assert legacy.reporting_currency is None
    # never bare minor units: said to be in the smallest unit of an unknown currency
    assert legacy.short() == "34,0909% (750 na menor unidade de uma moeda que não foi registrada)"
    assert Figures.from_dict(legacy.as_dict()) == legacy
    assert Figures.from_dict({"divergent_amount_minor": 1, "divergent_count": 1}).reporting_currency is None
    with pytest.raises(IncidentInputError, match="FX rate of EUR is malformed"):
        Figures.from_dict({**figures.as_dict(), "fx_rates": {"EUR": {"rate": "x", "valid_from": "y"}}})
    with pytest.raises(IncidentInputError, match="must be an integer"):
        Figures.from_dict({**figures.as_dict(), "by_currency": {"EUR": {"divergent_amount_minor": 9.5}}})


def test_update_email_text_html_slack_and_subject_show_each_currency():
    before = Figures.from_summary(mixed_summary(brl=20_000_000))
    now = Figures.from_summary(mixed_summary())
    update = IncidentUpdate(
        incident=incident(eta_resumption=AT + timedelta(hours=2)),
        as_of=AT,
        figures=now,
        previous_figures=before,
        since=AT - timedelta(minutes=30),
        steps=(
            IncidentEvent(
                id=3,
                incident_id="INCIDENT-472",
                step="reprocess",
                outcome="3 cycles re-run",
                actor="alice",
                created_at=AT - timedelta(minutes=10),
                figures=now,
            ),
        ),
    )
    message = render_update(update)
    assert message.subject == (
        "[INCIDENT-472] atualização da reconciliação de stripe 2026-11-20 11:30 UTC - "
        + now.short()
        + " divergentes"
    )
    slack = json.dumps(message.slack_blocks, ensure_ascii=False)
    for surface in (message.subject, message.text, message.html, slack):
        assert_per_currency(surface)
    # the change: the converted total's delta, and each currency's own delta
    change = "na atualização anterior (-R$ 95.824,79 convertidos; por moeda: -R$ 95.824,79)"
    assert change in message.text and change in message.html
    fields = {
        f["text"].split("\n")[0]: f["text"].split("\n", 1)[1]
        for b in message.slack_blocks
        if "fields" in b
        for f in b["fields"]
    }
    # one line per currency, each in its own currency; the rates; what has no rate
    assert fields["*Divergência agora*"] == (
        "15,5226% — R$ 164.345,24 divergentes (convertidos para BRL) em 15 transações de "
        "R$ 1.058.750,00 processados pelo gateway (convertidos para BRL)"
    )
    assert fields["*Por moeda*"].split("\n") == [
        "R$ 104.175,21 divergentes em 11 transações de R$ 900.000,00 processados",
        "EUR 9.619,80 divergentes em 1 transação de EUR 20.000,00 processados",
        "JPY 1.234 divergentes em 2 transações de JPY 900.000 processados",
        "USD 12,00 divergentes em 1 transação de USD 500,00 processados",
    ]
    assert fields["*Taxas de câmbio (para BRL)*"].split("\n") == [
        "1 EUR = 6,25 BRL (a partir de 2026-11-20 09:00 UTC, BCB PTAX)",
        "1 JPY = 0,0375 BRL (a partir de 2026-11-20 09:00 UTC, BCB PTAX)",
    ]
    assert fields["*Não convertido*"] == "sem taxa de câmbio: USD 12,00 não incluídos"
    assert_per_currency("\n".join(fields.values()))
    # the same lines in the e-mail: under the value column in text, one per line in HTML
    assert re.search(
        r"Por moeda: +R\$ 104\.175,21 divergentes em 11 transações de R\$ 900\.000,00 processados\n"
        r" +EUR 9\.619,80 divergentes em 1 transação",
        message.text,
    )
    assert "processados<br>EUR 9.619,80 divergentes" in message.html


def test_containment_notice_shows_each_currency():
    notice = ContainmentNotice(
        psp="stripe",
        paused_at=AT,
        paused_by="oncall",
        reason="statements incomplete",
        incident_id="INCIDENT-472",
        figures=Figures.from_summary(mixed_summary()),
    )
    message = render_containment(notice)
    for surface in (message.text, message.html, json.dumps(message.slack_blocks, ensure_ascii=False)):
        assert_per_currency(surface)
    assert re.search(
        r"Divergência na pausa: +15,5226% — R\$ 164\.345,24 divergentes \(convertidos para BRL\)",
        message.text,
    )


def test_closing_report_shows_kinds_and_corrections_per_currency():
    summary = mixed_summary()
    figures = Figures.from_summary(summary)
    payload = Detection(summary=summary, open_incident_id=None, checked_at=AT).event_payload()
    opened = IncidentEvent(
        id=1,
        incident_id="INCIDENT-472",
        step=Step.OPENED,
        outcome="alert",
        actor="watch",
        created_at=AT,
        figures=figures,
        details={k: payload[k] for k in ("by_kind", "by_currency", "reporting_currency")},
    )

    def correction(i: int, amount: int, currency: str | None) -> CorrectionRecord:
        return CorrectionRecord(
            transaction_id=i,
            provider_reference=f"r{i}",
            transaction_type="capture",
            kind="status_mismatch",
            amount_minor=amount,
            requested_by="alice",
            approved_by="bob",
            run_id="run-9",
            applied_at=AT,
            currency=currency,
        )

    corrections = (
        correction(1, 10_000_000, "BRL"),
        correction(2, 417_521, "BRL"),
        correction(3, EUR, "EUR"),
        correction(4, JPY, "JPY"),
        correction(5, 99, None),  # recorded before corrections kept their currency
    )
    report = ClosingReport(
        incident=incident(IncidentState.CLOSED, recovered_at=AT, closed_at=AT + timedelta(hours=1)),
        events=(opened,),
        corrections=corrections,
        final_figures=Figures.from_summary(mixed_summary(brl=0)),
        generated_at=AT + timedelta(hours=1),
    )
    markdown = render_closing_report_markdown(report)
    html = render_closing_report_html(report)
    for surface in (markdown, html):
        assert_per_currency(surface)
    # the opening's kinds, each in its currency
    assert "| tipo de divergência | moeda | chaves | valor divergente |" in markdown
    assert "| status divergente | BRL | 11 | R$ 104.175,21 |" in markdown
    assert "| status divergente | EUR | 1 | EUR 9.619,80 |" in markdown
    assert "| valor divergente | USD | 1 | USD 12,00 |" in markdown
    assert "| faltando no extrato do PSP | JPY | 2 | JPY 1.234 |" in markdown
    # corrections: each amount in its currency, totals per currency only
    assert "| r3 | capture | status divergente | EUR 9.619,80 | bob |" in markdown
    assert "| r4 | capture | status divergente | JPY 1.234 | bob |" in markdown
    legacy = "99 na menor unidade de uma moeda que não foi registrada"
    assert f"| r5 | capture | status divergente | {legacy} | bob |" in markdown
    group = (
        f"| alice | bob | run-9 | 5 | {legacy}; R$ 104.175,21; EUR 9.619,80; JPY 1.234 | status divergente |"
    )
    assert group in markdown
    assert "R$ 104.175,21 em 2 transações; EUR 9.619,80 em 1 transação; JPY 1.234 em 1 transação" in markdown
    assert "<td style=" in html and "EUR 9.619,80" in html
    # final numbers: BRL cleared, the other currencies remain, compared with the opening
    final = markdown.split("## Números finais")[1]
    assert "(-R$ 104.175,21 convertidos; por moeda: -R$ 104.175,21)" in final


def test_recovery_outcome_names_the_money_with_its_currency():
    summary = mixed_summary()
    data = summary.as_dict()
    result = {
        "status": "recovered",
        "divergent_amount_minor": data["divergent_amount_minor"],
        "divergent_count": data["divergent_count"],
        "divergence_pct": data["divergence_pct"],
        "latest_cycle_states": ["success", "success"],
        **{k: data[k] for k in ("reporting_currency", "by_currency", "fx_rates", "unconverted_currencies")},
    }
    outcome, _ = _describe_recovery(result)
    assert "minor units" not in outcome and "menor unidade" not in outcome
    assert_per_currency(outcome)


# -- through the database ------------------------------------------------------------------------


@pytest.mark.integration
def test_currency_figures_round_trip_through_the_database(divergent_psp):
    from psycopg.types.json import Jsonb

    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation.incident_messages import MessageKind, RenderedMessage

    hook = IncidentHook()
    summary = mixed_summary()
    figures = Figures.from_summary(summary)
    # the watch opens the incident with the alert payload (XCom JSON)
    payload = json.loads(
        json.dumps(Detection(summary=summary, open_incident_id=None, checked_at=AT).event_payload())
    )
    incident_id = hook.open_incident(
        "stripe", window=WINDOW, reason="alert", actor="watch", run_id="watch__1", figures=payload
    )
    assert hook.get(incident_id).figures == figures
    (opened,) = hook.timeline(incident_id)
    assert opened.figures == figures
    assert opened.figures.fx_rates["EUR"] == EUR_RATE  # the rates the alert used, on the timeline
    assert opened.details["by_currency"]["JPY"]["by_kind"] == {
        "missing_in_statement": {"count": 2, "amount_minor": JPY}
    }
    assert opened.details["reporting_currency"] == "BRL"
    stored = divergent_psp.execute(
        "SELECT currency_figures FROM recon.incident_events WHERE id = %s", (opened.id,)
    ).fetchone()[0]
    assert stored["currency"] == "BRL" and stored["unconverted_currencies"] == ["USD"]
    assert stored["by_currency"]["JPY"]["divergent_amount_minor"] == JPY

    # a later decision with other figures: both are kept, the incident shows the latest
    later = Figures.from_summary(mixed_summary(brl=0))
    event_id = hook.record_event(
        incident_id, step="recovery.criteria", outcome="met", actor="s", figures=later
    )
    (event,) = hook.events_after(incident_id, opened.id)
    assert (event.id, event.figures) == (event_id, later)
    assert hook.get(incident_id).figures == later
    # an event without figures leaves the incident's as they are
    hook.record_event(incident_id, step="note", outcome="x", actor="s")
    assert hook.get(incident_id).figures == later
    # through recon.notifications (the previous update's figures)
    message = RenderedMessage(MessageKind.UPDATE, "s", "t", "<p>h</p>", "s")
    row = hook.prepare_delivery(
        dedup_key="k",
        channel="email",
        kind="update",
        psp="stripe",
        slot=AT,
        recipient="finance@platform.io",
        message=message,
        incident_id=incident_id,
        figures=figures,
    )
    assert row.figures == figures

    # corrections read back with their currency
    divergent_psp.execute(
        "INSERT INTO recon.corrections (correction_key, incident_id, psp, transaction_id,"
        " provider_reference, transaction_type, kind, amount_minor, currency, before, after,"
        " requested_by, approved_by, run_id) VALUES"
        " ('c1', %(i)s, 'stripe', 2, 'r2', 'capture', 'status_mismatch', %(eur)s, 'EUR', %(j)s, %(j)s,"
        " 'alice', 'bob', 'run-9'),"
        " ('c1', %(i)s, 'stripe', 3, 'r3', 'capture', 'status_mismatch', 50, '', %(j)s, %(j)s,"
        " 'alice', 'bob', 'run-9')",
        {"i": incident_id, "eur": EUR, "j": Jsonb({})},
    )
    assert [(c.amount_minor, c.currency) for c in hook.corrections(incident_id)] == [(EUR, "EUR"), (50, None)]

    # rows recorded before migration 6 (no currency_figures) read back without a currency
    divergent_psp.execute(
        "UPDATE recon.incidents SET currency_figures = NULL WHERE incident_id = %s", (incident_id,)
    )
    legacy = hook.get(incident_id).figures
    assert legacy.reporting_currency is None and legacy.divergent_amount_minor == later.divergent_amount_minor


@pytest.mark.integration
def test_the_recovery_step_records_the_figures_and_rates_of_its_decision(divergent_psp):
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.remediation import SCOPE_TASK_ID, RemediationStep, RunRequest, recorded

    hook = IncidentHook()
    incident_id = hook.open_incident("stripe", window=WINDOW, reason="alert", actor="watch")
    data = mixed_summary(brl=0).as_dict()
    # the recovery sensor's XCom: the trigger's last evaluation
    result = {
        "status": "recovered",
        "latest_cycle_states": ["success", "success"],
        **{
            k: data[k]
            for k in (
                "divergent_amount_minor",
                "divergent_count",
                "divergence_pct",
                "reporting_currency",
                "by_currency",
                "fx_rates",
                "unconverted_currencies",
            )
        },
    }
    scope = {
        "incident_id": incident_id,
        "psp": "stripe",
        "window_start": WINDOW.start.isoformat(),
        "window_end": WINDOW.end.isoformat(),
    }

    class TaskInstance:
        task_id = "recover.recovery_criteria"
        dag_id = "billing_gateway_remediation"

        def xcom_pull(self, task_ids: str):
            return scope if task_ids == SCOPE_TASK_ID else result

    callbacks = recorded(RemediationStep.RECOVERY, _describe_recovery, RunRequest(), decision=True)
    callbacks["on_success_callback"]({"ti": TaskInstance(), "run_id": "manual__9"})
    event = hook.timeline(incident_id)[-1]
    assert event.step == RemediationStep.RECOVERY and event.run_id == "manual__9"
    # the figures the decision used (not a fresh read of the database, where stripe differs)
    assert event.figures == Figures.from_dict(result)
    assert event.figures.fx_rates == {"EUR": EUR_RATE, "JPY": JPY_RATE}
    assert event.figures.unconverted_currencies == ("USD",)
    assert "EUR 9.619,80" in event.outcome and "minor units" not in event.outcome


def test_change_compares_totals_only_in_one_currency():
    from airflow_recon_provider.reconciliation.incident_messages import _change

    now = Figures.from_summary(mixed_summary())
    legacy = Figures.from_columns(20_000_000, 12, None, None)  # recorded before currencies
    text = _change(now, legacy)
    assert (
        text
        == "era n/d (20.000.000 na menor unidade de uma moeda que não foi registrada) na atualização anterior"
    )
    assert not text.startswith(("subiu", "caiu"))
    assert _change(now, now) == f"sem mudança desde a atualização anterior ({now.short()})"
    # only the euros moved: the converted delta and the euros' own delta
    eur = Figures.from_summary(
        DivergenceSummary(
            psp="stripe",
            window=WINDOW,
            by_currency={
                **mixed_summary().by_currency,
                "EUR": CurrencyFigures(
                    "EUR", 10, 2_000_000, {DivergenceKind.STATUS_MISMATCH: KindTotal(1, EUR + 100)}
                ),
            },
            fx_rates={"EUR": EUR_RATE, "JPY": JPY_RATE},
        )
    )
    assert _change(eur, now).endswith("(+R$ 6,25 convertidos; por moeda: +EUR 1,00)")
