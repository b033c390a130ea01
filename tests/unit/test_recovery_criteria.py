"""Critérios de Recuperação 3, "Relatório financeiro alinhado com extratos PSP" (pure, no
database): the ledger against the PSP's statement per status and currency, the gateway
beside them; the per-PSP ledger status mapping and its validation; the three criteria on the
timeline text, in the finance update and in the closing report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from airflow_recon_provider.reconciliation import ConfigError, ReconConfig, ThresholdPolicy, Window
from airflow_recon_provider.reconciliation.figures import Figures
from airflow_recon_provider.reconciliation.incident_messages import (
    ClosingReport,
    IncidentUpdate,
    render_closing_report_html,
    render_closing_report_markdown,
    render_update,
)
from airflow_recon_provider.reconciliation.incidents import Incident, IncidentEvent, IncidentState
from airflow_recon_provider.reconciliation.money import FxRate
from airflow_recon_provider.reconciliation.recovery import (
    AlignmentLine,
    LedgerAlignment,
    alignment_lines,
    gap_currencies,
    recovery_criteria,
)
from airflow_recon_provider.reconciliation.thresholds import Thresholds

AT = datetime(2026, 11, 20, 15, tzinfo=UTC)
WINDOW = Window(datetime(2026, 11, 20, 11, tzinfo=UTC), datetime(2026, 11, 20, 14, tzinfo=UTC))
EUR = FxRate("EUR", Decimal("6.2875"), datetime(2026, 11, 19, tzinfo=UTC), "demo")


def aligned(lines, **kwargs) -> LedgerAlignment:
    kwargs.setdefault("reporting_currency", "BRL")
    kwargs.setdefault("max_count", 10)
    kwargs.setdefault("max_amount_minor", 50_000)
    return LedgerAlignment(lines=tuple(lines), **kwargs)


# -- side by side ------------------------------------------------------------------------------


def test_lines_put_the_three_sides_in_the_gateways_vocabulary_per_currency():
    sides = [
        ("gateway", "captured", "BRL", 12, 600_000),
        ("gateway", "authorized", "BRL", 3, 9_000),
        ("gateway", "captured", "EUR", 1, 10_000),
        ("statement", "succeeded", "BRL", 12, 600_000),  # stripe's word for captured
        ("statement", "authorized", "BRL", 3, 9_000),
        ("statement", "succeeded", "EUR", 1, 10_000),
    ]
    ledger = [
        ("CAPT", "BRL", 10, 500_000),  # the ledger's own word, mapped to the statement's
        ("authorized", "BRL", 3, 9_000),
        ("CAPT", None, 1, 10_000),  # a ledger row with no currency is never another's
    ]
    lines = alignment_lines(
        sides,
        ledger,
        status_mapping={"succeeded": "captured"},
        ledger_status_mapping={"CAPT": "succeeded"},
    )
    assert [(line.status, line.currency) for line in lines] == [
        ("authorized", "BRL"),
        ("captured", ""),
        ("captured", "BRL"),
        ("captured", "EUR"),
    ]
    by_key = {(line.status, line.currency): line for line in lines}
    assert by_key["authorized", "BRL"].aligned
    captured = by_key["captured", "BRL"]
    assert (captured.ledger_count, captured.statement_count, captured.gateway_count) == (10, 12, 12)
    assert captured.text() == (
        "captured BRL: ledger 10 / R$ 5.000,00, extrato do PSP 12 / R$ 6.000,00, gateway 12 / R$ 6.000,00"
    )
    # the EUR capture is missing from the ledger, which has it without a currency
    assert not by_key["captured", "EUR"].aligned and not by_key["captured", ""].aligned
    assert gap_currencies(lines) == {"", "BRL", "EUR"}
    assert AlignmentLine.from_dict(captured.as_dict()) == captured


def test_a_status_move_is_one_row_and_amounts_are_never_added_across_currencies():
    lines = [
        # one R$ 300,00 capture still authorized in the ledger: one row to move, R$ 300,00
        AlignmentLine("authorized", "BRL", 1, 30_000, 0, 0, 0, 0),
        AlignmentLine("captured", "BRL", 4, 120_000, 5, 150_000, 5, 150_000),
        # an amount off by EUR 0,07 in the same count
        AlignmentLine("captured", "EUR", 2, 10_007, 2, 10_000, 2, 10_000),
    ]
    alignment = aligned(lines, fx_rates={"EUR": EUR})
    gaps = alignment.gaps
    assert (gaps["BRL"].count, gaps["BRL"].amount_minor) == (1, 30_000)
    assert (gaps["EUR"].count, gaps["EUR"].amount_minor) == (0, 7)
    assert alignment.differing_count == 1
    # EUR 0,07 at 6,2875 = R$ 0,44 (half even), converted once per currency
    assert alignment.differing_amount_minor == 30_000 + 44
    assert alignment.met
    text = alignment.describe()
    assert text.startswith("o ledger difere dos extratos PSP em 1 linha e R$ 300,44 convertidos")
    assert "BRL: 1 linha, R$ 300,00; EUR: 0 linha, EUR 0,07; 1 EUR = 6,2875 BRL" in text
    assert text.endswith("(limite: menos de 10 linhas e R$ 500,00)")
    assert LedgerAlignment.from_dict(alignment.as_dict()) == alignment


def test_not_aligned_at_the_limits_and_without_a_rate():
    twelve = [AlignmentLine("captured", "BRL", 0, 0, 12, 600_000 - 1, 12, 600_000 - 1)]
    assert not aligned(twelve).met  # 12 rows
    assert aligned(twelve, max_count=13, max_amount_minor=600_000).met
    assert not aligned(twelve, max_count=13, max_amount_minor=600_000 - 1).met  # strictly below
    exact = [AlignmentLine("captured", "BRL", 1, 1, 1, 0, 1, 0)]
    assert aligned(exact).met and not aligned(exact, max_count=1, max_amount_minor=1).met
    # a currency that differs and has no rate is never taken as small
    eur = [AlignmentLine("captured", "EUR", 0, 0, 1, 100, 1, 100)]
    no_rate = aligned(eur)
    assert no_rate.unconverted_currencies == ("EUR",) and not no_rate.met
    assert "sem taxa de câmbio para EUR" in no_rate.describe()
    assert aligned(eur, fx_rates={"EUR": EUR}).met
    nameless = aligned([AlignmentLine("captured", "", 1, 100, 0, 0, 0, 0)])
    assert not nameless.met and "linhas do ledger sem moeda" in nameless.describe()
    # only the rates of differing currencies are kept
    assert aligned(twelve, fx_rates={"EUR": EUR}).fx_rates == {}


def test_agreement_is_said_plainly():
    lines = [AlignmentLine("captured", "BRL", 2, 200, 2, 200, 2, 200)]
    text = aligned(lines).describe()
    assert text == "o ledger está de acordo com os extratos PSP em todos os status e moedas (1 linha)"


# -- configuration -----------------------------------------------------------------------------


def test_ledger_status_mapping_and_ledger_thresholds_per_psp():
    config = ReconConfig.from_dict(
        {
            "psps": [
                {
                    "name": "stripe",
                    "status_mapping": {"succeeded": "captured"},
                    "ledger_status_mapping": {"CAPT": "succeeded"},
                },
                "adyen",
            ],
            "thresholds": {
                "per_psp": {"stripe": {"recovered_ledger_count": 1, "recovered_ledger_amount_minor": 1}}
            },
        }
    )
    assert config.psp("stripe").ledger_status_mapping == {"CAPT": "succeeded"}
    assert config.psp("adyen").ledger_status_mapping == {}
    strict, default = config.thresholds.for_psp("stripe"), config.thresholds.for_psp("adyen")
    assert (strict.recovered_ledger_count, strict.recovered_ledger_amount_minor) == (1, 1)
    assert (default.recovered_ledger_count, default.recovered_ledger_amount_minor) == (10, 50_000)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (["CAPT", "succeeded"], r"ledger_status_mapping of PSP 'stripe' must be an object of ledger status"),
        (None, r"must be an object .* got None"),
        ("CAPT=succeeded", r"must be an object"),
        ({"CAPT": 5}, r"statement status 5 \(entry 'CAPT': 5\) must be a non-empty string"),
        ({"CAPT": ""}, r"statement status '' \(entry 'CAPT': ''\) must be a non-empty string"),
        ({"": "succeeded"}, r"ledger status '' \(entry '': 'succeeded'\) must be a non-empty string"),
        ({"CAPT ": "succeeded"}, r"ledger status 'CAPT ' has spaces around it"),
        ({"CAPT": " succeeded"}, r"statement status ' succeeded' has spaces around it"),
    ],
)
def test_ledger_status_mapping_errors_name_the_psp_and_the_entry(mapping, message):
    with pytest.raises(ConfigError, match=message):
        ReconConfig.from_dict({"psps": [{"name": "stripe", "ledger_status_mapping": mapping}]})


def test_misspelt_ledger_mapping_key_and_bad_ledger_thresholds():
    with pytest.raises(ConfigError, match="ledger_status_mappings"):
        ReconConfig.from_dict({"psps": [{"name": "stripe", "ledger_status_mappings": {"A": "a"}}]})
    with pytest.raises(ConfigError, match="recovered_ledger_count must be a non-negative integer"):
        ThresholdPolicy.from_dict({"recovered_ledger_count": -1})
    with pytest.raises(ConfigError, match="recovered_ledger_amount_minor must be a non-negative integer"):
        ThresholdPolicy.from_dict({"per_psp": {"stripe": {"recovered_ledger_amount_minor": 1.5}}})


def test_the_ledger_has_a_mapped_currency_column():
    from airflow_recon_provider.reconciliation import TableMapping

    assert TableMapping().ledger.currency == "currency"
    assert TableMapping.from_dict({"ledger_transactions": {"currency": "moeda"}}).ledger.currency == "moeda"


# -- the three criteria, for people --------------------------------------------------------------


def check(*, ledger_lines, status="not_recovered", **overrides) -> dict:
    """A recovery check as RecoveryTrigger.check returns it."""
    thresholds = Thresholds()
    alignment = aligned(ledger_lines)
    result = {
        "status": status,
        "psp": "stripe",
        **WINDOW.as_dict(),
        "divergent_amount_minor": 0,
        "divergent_count": 0,
        "divergence_pct": 0.0,
        "latest_cycle_states": ["success", "success"],
        "amounts_recovered": True,
        "cycles_recovered": True,
        "successful_runs_needed": 2,
        "ledger": alignment.as_dict(),
        "thresholds": {"recovered_amount_minor": 50_000, "recovered_count": 10},
        "reporting_currency": "BRL",
        "by_currency": {},
        "fx_rates": {},
        "unconverted_currencies": [],
        "checked_at": AT.isoformat(),
    }
    assert thresholds.recovered_ledger_count == alignment.max_count
    result.update(overrides)
    return result


OFF_LEDGER = [AlignmentLine("captured", "BRL", 0, 0, 12, 600_000, 12, 600_000)]
FIXED_LEDGER = [AlignmentLine("captured", "BRL", 12, 600_000, 12, 600_000, 12, 600_000)]


def test_three_criteria_with_their_figures():
    amounts, cycles, ledger = recovery_criteria(check(ledger_lines=OFF_LEDGER))
    assert amounts.text() == (
        "1. Divergência < R$ 500,00 e < 10 transações: atendido — 0 chave divergente, 0,0000% (R$ 0,00)"
    )
    assert cycles.text() == (
        "2. Os 2 últimos ciclos de reconciliação executaram com status success: atendido — "
        "últimos ciclos: success, success"
    )
    assert ledger.met is False
    assert ledger.text() == (
        "3. Relatório financeiro alinhado com extratos PSP: NÃO atendido — o ledger difere dos extratos "
        "PSP em 12 linhas e R$ 6.000,00 — captured BRL: ledger 0 / R$ 0,00, extrato do PSP 12 / "
        "R$ 6.000,00, gateway 12 / R$ 6.000,00 (limite: menos de 10 linhas e R$ 500,00)"
    )
    *_, fixed = recovery_criteria(check(ledger_lines=FIXED_LEDGER, status="recovered"))
    assert fixed.met is True and "está de acordo com os extratos PSP" in fixed.text()


def test_a_check_recorded_before_the_ledger_criterion_reads_back():
    old = {
        "status": "recovered",
        "divergent_amount_minor": 1_000,
        "divergent_count": 1,
        "latest_cycle_states": ["success", "success"],
        "amounts_recovered": True,
        "reporting_currency": "BRL",
    }
    amounts, cycles, ledger = recovery_criteria(old)
    assert amounts.title == "Divergência abaixo dos limites de recuperação" and amounts.met
    assert cycles.met is True
    assert ledger.met is None and ledger.text().endswith("não verificado — não faz parte desta verificação")


def _incident(state=IncidentState.MITIGATING) -> Incident:
    return Incident(
        incident_id="INCIDENT-472",
        psp="stripe",
        state=state,
        opened_by="divergence-watch",
        opened_at=AT - timedelta(hours=2),
        window=WINDOW,
        recovered_at=AT if state is IncidentState.CLOSED else None,
        closed_at=AT if state is IncidentState.CLOSED else None,
    )


def test_the_update_shows_the_three_criteria_or_why_they_were_not_checked():
    update = IncidentUpdate(
        incident=_incident(),
        as_of=AT,
        figures=Figures(0, 0, 600_000),
        recovery=check(ledger_lines=OFF_LEDGER),
    )
    message = render_update(update)
    assert "Critérios de Recuperação:" in message.text
    assert "3. Relatório financeiro alinhado com extratos PSP: NÃO atendido" in message.text
    assert "captured BRL: ledger 0 / R$ 0,00, extrato do PSP 12 / R$ 6.000,00" in message.text
    assert "1. Divergência &lt; R$ 500,00 e &lt; 10 transações: atendido" in message.html
    assert "Critérios de Recuperação" in str(message.slack_blocks)
    unchecked = render_update(
        IncidentUpdate(
            incident=_incident(),
            as_of=AT,
            figures=None,
            recovery_note="Airflow connection 'x' is not defined",
        )
    )
    assert "Critérios de Recuperação:" in unchecked.text
    assert "não verificados (Airflow connection 'x'" in unchecked.text


def _recovery_event(event_id: int, result: dict, outcome: str) -> IncidentEvent:
    return IncidentEvent(
        id=event_id,
        incident_id="INCIDENT-472",
        step="recovery.criteria",
        outcome=outcome,
        actor="oncall",
        created_at=AT - timedelta(minutes=60 - event_id),
        figures=Figures(0, 0, 600_000),
        details={"recovery": result},
    )


def test_the_closing_report_shows_the_last_check_and_the_ledger_side_by_side():
    events = (
        _recovery_event(1, check(ledger_lines=OFF_LEDGER), "recovery criteria not met yet: ..."),
        _recovery_event(
            2, check(ledger_lines=FIXED_LEDGER, status="recovered"), "recovery criteria met: ..."
        ),
    )
    report = ClosingReport(
        incident=_incident(IncidentState.CLOSED),
        events=events,
        corrections=(),
        final_figures=Figures(0, 0, 600_000),
        generated_at=AT,
    )
    markdown = render_closing_report_markdown(report)
    section = markdown.split("## Critérios de Recuperação")[1].split("## Números finais")[0]
    assert "Verificados em 2026-11-20 14:02 UTC (recovery criteria met):" in section
    assert (
        "- 3. Relatório financeiro alinhado com extratos PSP: atendido — o ledger está de acordo" in section
    )
    assert "| status | moeda | ledger | extrato do PSP | gateway | ledger vs extrato |" in section
    assert "| captured | BRL | 12 / R$ 6.000,00 | 12 / R$ 6.000,00 | 12 / R$ 6.000,00 | alinhado |" in section
    assert "<h2>Critérios de Recuperação</h2>" in render_closing_report_html(report)
    none = ClosingReport(
        incident=_incident(IncidentState.CLOSED),
        events=(),
        corrections=(),
        final_figures=None,
        generated_at=AT,
    )
    assert "Nenhuma verificação de recuperação foi registrada." in render_closing_report_markdown(none)
