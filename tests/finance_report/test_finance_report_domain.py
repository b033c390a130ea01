"""The finance report's checks and wording (pure: no Airflow, no database)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_recon_provider.reconciliation.finance_report import (
    DESCRIPTION_MAX,
    FinanceReportError,
    dry_run_conf,
    dry_run_run_id,
    parse_finance_report,
    side_by_side,
    slack_text,
)
from airflow_recon_provider.reconciliation.i18n import use_language

GOOD = {
    "psp": "stripe",
    "window_start": "2026-11-20T11:00:00Z",
    "window_end": "2026-11-20T14:00:00-00:00",
    "finance_ticket": "FIN-88",
    "description": "Ledger R$ 1.234,56 acima do extrato <b>",
}


def parse(**overrides):
    return parse_finance_report(**{**GOOD, **overrides}, known_psps=["stripe", "adyen"])


def test_a_good_report_is_normalized_to_utc():
    report = parse(window_start="2026-11-20T08:00:00-03:00")
    assert report.psp == "stripe" and report.finance_ticket == "FIN-88"
    assert report.window.as_dict() == {
        "window_start": "2026-11-20T11:00:00+00:00",
        "window_end": "2026-11-20T14:00:00+00:00",
    }
    assert report.description == GOOD["description"]  # kept as typed; escaped where shown
    assert report.reason == "finance report FIN-88"


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"psp": "paypal"}, "psp", "desconhecido"),
        ({"psp": "stripe'; DROP TABLE recon.incidents; --"}, "psp", "inválido"),
        ({"psp": ""}, "psp", "Informe o PSP"),
        ({"window_start": "ontem"}, "window_start", "não é uma data e hora ISO 8601"),
        ({"window_start": "2026-11-20T11:00:00"}, "window_start", "fuso"),
        ({"window_end": "2026-11-20T10:00:00Z"}, "window_end", "precisa ser depois do início"),
        ({"window_end": "2027-01-20T10:00:00Z"}, "window_end", "maior que o máximo de 31 dias"),
        ({"finance_ticket": "FIN-88'; --"}, "finance_ticket", "o formato é FIN-<número>"),
        ({"finance_ticket": "<script>"}, "finance_ticket", "o formato é FIN-<número>"),
        ({"finance_ticket": "FIN-0"}, "finance_ticket", "o formato é FIN-<número>"),
        ({"description": "   "}, "description", "Descreva"),
        ({"description": "x" * (DESCRIPTION_MAX + 1)}, "description", "o máximo é 2000"),
        ({"description": "ok\x00{{ 7*7 }}"}, "description", "caracteres de controle"),
    ],
)
def test_each_problem_names_its_field(overrides, field, words):
    with pytest.raises(FinanceReportError) as caught:
        parse(**overrides)
    assert field in caught.value.problems, caught.value.problems
    assert words in caught.value.problems[field]


def test_every_problem_is_reported_at_once():
    with pytest.raises(FinanceReportError) as caught:
        parse(psp="paypal", finance_ticket="88", description="")
    assert list(caught.value.problems) == ["psp", "finance_ticket", "description"]


def test_the_configured_maximum_window_applies():
    with pytest.raises(FinanceReportError, match="maior que o máximo de 2 horas"):
        parse_finance_report(**GOOD, known_psps=None, max_window=timedelta(hours=2))


def test_the_dry_run_id_and_conf_follow_the_report_run():
    report = parse()
    run_id = dry_run_run_id("FIN-88", "manual__2026-11-20T15:00:00+00:00")
    assert run_id == "finance_report__FIN-88__manual__2026-11-20T15:00:00+00:00"
    assert dry_run_run_id("FIN-88", "a b/c") == "finance_report__FIN-88__a_b_c"
    assert dry_run_conf(report, "INCIDENT-9") == {
        "psp": "stripe",
        "window_start": "2026-11-20T11:00:00+00:00",
        "window_end": "2026-11-20T14:00:00+00:00",
        "incident_id": "INCIDENT-9",
        "dry_run": True,
    }


def test_slack_text_escapes_what_finance_typed():
    text = slack_text(
        parse(description="<!channel> & <http://x|y>"),
        incident_id="INCIDENT-9",
        opened=True,
        reported_by="finance.bia",
        dry_run_id="finance_report__FIN-88__r",
    )
    assert "&lt;!channel&gt; &amp; &lt;http://x|y&gt;" in text and "<!channel>" not in text
    assert "Incidente *INCIDENT-9* aberto" in text and "20/11/2026 11:00 UTC a 20/11/2026 14:00 UTC" in text


def test_side_by_side_never_adds_currencies():
    rows = [
        ("gateway", "captured", "BRL", 3, 3000),
        ("gateway", "captured", "EUR", 1, 500),
        ("statement", "succeeded", "BRL", 2, 2000),  # mapped to captured
        ("statement", "captured", "EUR", 1, 500),
    ]
    sides = side_by_side(
        rows,
        status_mapping={"succeeded": "captured"},
        ledger_statuses=[
            {"status": "captured", "currency": "EUR", "ledger_count": 1, "ledger_amount_minor": 400},
            {"status": "captured", "currency": "BRL", "ledger_count": 3, "ledger_amount_minor": 3000},
        ],
    )
    assert sides["gateway_vs_statement"] == [
        {"status": "captured", "currency": "BRL", "gateway_count": 3, "gateway_amount_minor": 3000,
         "statement_count": 2, "statement_amount_minor": 2000, "matches": False},
        {"status": "captured", "currency": "EUR", "gateway_count": 1, "gateway_amount_minor": 500,
         "statement_count": 1, "statement_amount_minor": 500, "matches": True},
    ]  # fmt: skip
    # the ledger per currency too: BRL agrees with the gateway, EUR's amount does not (its
    # 1 EUR short is never hidden by adding it to the reais)
    assert sides["ledger"] == [
        {"status": "captured", "currency": "BRL", "ledger_count": 3, "ledger_amount_minor": 3000,
         "gateway_count": 3, "gateway_amount_minor": 3000, "count_matches": True, "matches": True},
        {"status": "captured", "currency": "EUR", "ledger_count": 1, "ledger_amount_minor": 400,
         "gateway_count": 1, "gateway_amount_minor": 500, "count_matches": True, "matches": False},
    ]  # fmt: skip


def test_in_english_the_problems_and_the_slack_text_read_in_english():
    """The same checks and message with ``[recon] language = en`` (the shell's language_scope)."""
    with use_language("en"), pytest.raises(FinanceReportError) as caught:
        parse(psp="paypal", window_end="2027-01-20T10:00:00Z", finance_ticket="88", description="")
    assert caught.value.problems == {
        "psp": "PSP 'paypal' is unknown; configured PSPs: stripe, adyen.",
        "window_end": "The window of 1,463 hours is longer than the maximum of 31 days; split the period "
        "into smaller reports.",
        "finance_ticket": "Finance ticket '88' is invalid: the format is FIN-<number>, for example FIN-88.",
        "description": "Describe the difference finance found.",
    }
    assert str(caught.value).startswith("invalid finance report: PSP 'paypal' is unknown")
    with use_language("en"), pytest.raises(FinanceReportError, match="longer than the maximum of 2 hours"):
        parse_finance_report(**GOOD, known_psps=None, max_window=timedelta(hours=2))
    with use_language("en"):
        text = slack_text(
            parse(),
            incident_id="INCIDENT-9",
            opened=False,
            reported_by="finance.bia",
            dry_run_id="finance_report__FIN-88__r",
            incident_link="http://x/recon/incidents/INCIDENT-9",
        )
    assert text.splitlines() == [
        ":rotating_light: *Finance report FIN-88* — PSP `stripe`: difference between the ledger and the "
        "PSP's statement",
        "Incident *INCIDENT-9* already open; the report was attached — "
        "<http://x/recon/incidents/INCIDENT-9|see it on the dashboard>",
        "Window: 2026-11-20 11:00 UTC to 2026-11-20 14:00 UTC",
        "Reported by: finance.bia",
        "Description: Ledger R$ 1.234,56 acima do extrato &lt;b&gt;",
        "Dry-run investigation started: `finance_report__FIN-88__r`",
    ]
