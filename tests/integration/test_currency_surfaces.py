"""One window, four currencies, every surface that reads the database directly (DESIGN 3a,
issue 13): BRL, EUR and JPY divergences with rates loaded, a USD divergence without one.

The summary JSON, the report (jsonl, csv, table), the CLI's summary table and the dashboard's
JSON and page each show every currency's figure in that currency, the converted total in
reais only as a labelled conversion with its rates, USD as not converted, and never the
number one gets by adding minor units of different currencies. The incident, approval,
e-mail, Slack, closing-report and PSP-ticket surfaces are checked on the same four
currencies in tests/incidents/test_incident_currencies.py,
tests/corrections/test_correction_policy.py and tests/remediation/test_psp_ticket.py.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from airflow_recon_provider.cli import main

pytestmark = pytest.mark.integration

WINDOW = ["--window-start", "2026-11-20T10:00:00Z", "--window-end", "2026-11-20T11:00:00Z"]
EUR_RATE, JPY_RATE = Decimal("6.2875"), Decimal("0.0375")

# divergent amounts, each in its own minor units (JPY has no decimals)
BRL_DIV = 1_041_752  # missing in the statement
EUR_DIV = 96_198  # status mismatch: the PSP says failed
USD_DIV = 12_000  # missing in the statement, no USD rate loaded
JPY_DIV = 1_234  # missing in the statement
# matched rows, one per currency, so that the gateway totals differ from the divergence
MATCHED = {"BRL": 50_000, "EUR": 7_000, "USD": 3_000, "JPY": 500}


def _to_brl(minor: int, rate: Decimal, exponent: int) -> int:
    """The hand computation: amount in units x rate, in centavos, half-even, once."""
    reais = Decimal(minor).scaleb(-exponent) * rate
    return int((reais * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


CONVERTED_DIV = BRL_DIV + _to_brl(EUR_DIV, EUR_RATE, 2) + _to_brl(JPY_DIV, JPY_RATE, 0)
MIXED_SUM = BRL_DIV + EUR_DIV + USD_DIV + JPY_DIV  # what a currency-blind tool would show


@pytest.fixture
def four_currencies(db, airflow_conns):
    rows = [
        # (intent id, reference, currency, gateway status, amount, statement status or None)
        (1, "brl-div", "BRL", "captured", BRL_DIV, None),
        (2, "eur-div", "EUR", "captured", EUR_DIV, "failed"),
        (3, "usd-div", "USD", "captured", USD_DIV, None),
        (4, "jpy-div", "JPY", "captured", JPY_DIV, None),
    ]
    rows += [
        (10 + i, f"{cur.lower()}-ok", cur, "captured", amount, "captured")
        for i, (cur, amount) in enumerate(MATCHED.items())
    ]
    for intent, ref, cur, status, amount, statement_status in rows:
        db.execute(
            "INSERT INTO payment_intents (id, provider, provider_reference) VALUES (%s, 'stripe', %s)",
            (intent, ref),
        )
        db.execute(
            "INSERT INTO payment_transactions (intent_id, transaction_type, status, amount_minor,"
            " currency, created_at) VALUES (%s, 'capture', %s, %s, %s, '2026-11-20T10:20Z')",
            (intent, status, amount, cur),
        )
        if statement_status:
            db.execute(
                "INSERT INTO psp_statement_lines (psp, provider_reference, transaction_type, status,"
                " amount_minor, currency, occurred_at, statement_id)"
                " VALUES ('stripe', %s, 'capture', %s, %s, %s, '2026-11-20T10:20:03Z', 's1')",
                (ref, statement_status, amount, cur),
            )
    db.execute(
        "INSERT INTO payment_reconciliation_logs (psp, cycle_start, cycle_end, status) VALUES"
        " ('stripe', '2026-11-20T10:00Z', '2026-11-20T11:00Z', 'success')"
    )
    db.execute(
        "INSERT INTO recon.fx_rates (currency, rate, valid_from, source) VALUES"
        " ('EUR', %s, '2026-11-19T16:00Z', 'BCB PTAX'), ('JPY', %s, '2026-11-19T16:00Z', 'BCB PTAX')",
        (EUR_RATE, JPY_RATE),
    )
    return db


def _cli(capsys, *argv: str, stream: str = "out") -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out if stream == "out" else err


def _never_mixed(text: str) -> None:
    """The sum of minor units across currencies appears in no spelling."""
    units = Decimal(MIXED_SUM).scaleb(-2)
    for spelling in (
        str(MIXED_SUM),
        f"{units:,.2f}",
        f"{units:,.2f}".replace(",", "X").replace(".", ",").replace("X", "."),
    ):
        assert spelling not in text, f"a sum across currencies ({spelling}) is shown"


def test_summary_json_keeps_each_currency_and_converts_with_the_rates(four_currencies, capsys):
    doc = json.loads(_cli(capsys, "summary", "--psp", "stripe", *WINDOW))
    by = doc["by_currency"]
    assert sorted(by) == ["BRL", "EUR", "JPY", "USD"]
    assert {c: by[c]["divergent_amount_minor"] for c in by} == {
        "BRL": BRL_DIV, "EUR": EUR_DIV, "USD": USD_DIV, "JPY": JPY_DIV,
    }  # fmt: skip
    assert {c: by[c]["exponent"] for c in by} == {"BRL": 2, "EUR": 2, "USD": 2, "JPY": 0}
    assert by["EUR"]["by_kind"] == {"status_mismatch": {"count": 1, "amount_minor": EUR_DIV}}
    assert {c: by[c]["gateway_amount_minor"] for c in by} == {
        "BRL": BRL_DIV + MATCHED["BRL"], "EUR": EUR_DIV + MATCHED["EUR"],
        "USD": USD_DIV + MATCHED["USD"], "JPY": JPY_DIV + MATCHED["JPY"],
    }  # fmt: skip
    # the converted figures: BRL, EUR and JPY in reais; USD has no rate and is named, not added
    assert doc["reporting_currency"] == "BRL"
    assert doc["divergent_amount_minor"] == CONVERTED_DIV
    assert doc["unconverted_currencies"] == ["USD"]
    assert sorted(doc["fx_rates"]) == ["EUR", "JPY"]
    assert Decimal(str(doc["fx_rates"]["EUR"]["rate"])) == EUR_RATE
    assert "fx_rate_missing" in doc["alert_reasons"] and doc["alert"] is True
    _never_mixed(json.dumps(doc))


def test_summary_table_shows_each_currency_in_its_own_format(four_currencies, capsys):
    out = _cli(capsys, "summary", "--psp", "stripe", *WINDOW, "--table", stream="err")
    assert "R$ 10.417,52" in out and "EUR 961,98" in out and "JPY 1.234" in out and "USD 120,00" in out
    converted = Decimal(CONVERTED_DIV).scaleb(-2)
    converted_text = f"R$ {converted:,.2f}".replace(",", "X").replace(".", ",").replace("X", ".")
    assert converted_text in out  # the converted total, with the rates that made it
    assert "6,2875" in out and "0,0375" in out and "USD" in out
    _never_mixed(out)


def test_report_rows_carry_their_currency_in_every_format(four_currencies, capsys):
    rows = [json.loads(line) for line in _cli(capsys, "report", "--psp", "stripe", *WINDOW).splitlines()]
    got = {r["provider_reference"]: (r["currency"], r["divergent_amount_minor"]) for r in rows}
    assert got == {
        "brl-div": ("BRL", BRL_DIV), "eur-div": ("EUR", EUR_DIV),
        "usd-div": ("USD", USD_DIV), "jpy-div": ("JPY", JPY_DIV),
    }  # fmt: skip
    assert all(isinstance(r["divergent_amount_minor"], int) for r in rows)

    table = list(
        csv.DictReader(io.StringIO(_cli(capsys, "report", "--psp", "stripe", *WINDOW, "--format", "csv")))
    )
    assert {r["provider_reference"]: r["currency"] for r in table} == {k: v[0] for k, v in got.items()}

    text = _cli(capsys, "report", "--psp", "stripe", *WINDOW, "--format", "table")
    for shown in ("R$ 10.417,52", "EUR 961,98", "USD 120,00", "JPY 1.234"):
        assert shown in text
    _never_mixed(text)


def test_dashboard_json_and_page_show_each_currency(four_currencies, monkeypatch):
    from fastapi.testclient import TestClient

    from airflow_recon_provider.plugins.dashboard_app import create_app

    params = {"cycles": 1, "end": "2026-11-20T11:00:00Z"}
    with TestClient(create_app(require_login=False)) as client:
        data = client.get("/api/psps", params=params)
        page = client.get("/", params=params)
    assert data.status_code == 200, data.text
    stripe = next(p for p in data.json()["psps"] if p["psp"] == "stripe")
    summary = stripe["summary"]
    assert {c: v["divergent_amount_minor"] for c, v in summary["by_currency"].items()} == {
        "BRL": BRL_DIV, "EUR": EUR_DIV, "USD": USD_DIV, "JPY": JPY_DIV,
    }  # fmt: skip
    assert summary["divergent_amount_minor"] == CONVERTED_DIV
    assert summary["unconverted_currencies"] == ["USD"]
    _never_mixed(data.text)

    assert page.status_code == 200
    html = page.text
    row = html[html.index('data-psp="stripe"') :]
    for shown in ("R$ 10.417,52", "EUR 961,98", "USD 120,00", "JPY 1.234", "1 EUR = 6,2875 BRL"):
        assert shown in row, shown
    # the row's own-currency figures, one separator between each, none dangling
    assert "convertido: R$ 10.417,52 · EUR 961,98 · JPY 1.234 · USD 120,00</span>" in row
    _never_mixed(html)
