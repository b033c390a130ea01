"""Report rows, summary and renderers (DESIGN sections 3 and 6)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from airflow_recon_provider.reconciliation import (
    DivergenceKind,
    DivergenceRow,
    DivergenceSummary,
    KindTotal,
    Thresholds,
    Window,
    divergence_pct,
)
from airflow_recon_provider.reconciliation.money import format_money
from airflow_recon_provider.reconciliation.report import (
    REPORT_FIELDS,
    render_rows,
    summary_table,
    write_csv,
    write_jsonl,
    write_table,
)

DESIGN_KEYS = [
    "kind",
    "provider_reference",
    "transaction_type",
    "gateway_status",
    "statement_status",
    "gateway_amount_minor",
    "statement_amount_minor",
    "divergent_amount_minor",
    "currency",
]

BIG = 9_007_199_254_740_993  # 2**53 + 1: not representable as a float

W = Window(datetime(2026, 11, 20, 10, tzinfo=UTC), datetime(2026, 11, 20, 11, tzinfo=UTC))

ROWS = [
    DivergenceRow(
        kind=DivergenceKind.DUPLICATE_IN_GATEWAY,
        provider_reference="r3",
        transaction_type="capture",
        gateway_status="captured",
        statement_status="captured",
        gateway_amount_minor=1600,
        statement_amount_minor=700,
        divergent_amount_minor=900,
        currency="BRL",
        gateway_count=2,
        statement_count=1,
        gateway_first_id=3,
    ),
    DivergenceRow(
        kind=DivergenceKind.MISSING_IN_GATEWAY,
        provider_reference="r9",
        transaction_type="refund",
        gateway_status=None,
        statement_status="refunded",
        gateway_amount_minor=None,
        statement_amount_minor=BIG,
        divergent_amount_minor=BIG,
        currency="BRL",
        gateway_count=0,
        statement_count=1,
    ),
    DivergenceRow(
        kind=DivergenceKind.AMOUNT_MISMATCH,
        provider_reference='ref,with "quotes" and ção',
        transaction_type="settlement",
        gateway_status="settled",
        statement_status="settled",
        gateway_amount_minor=123_456,
        statement_amount_minor=123_400,
        divergent_amount_minor=56,
        currency="USD",
        gateway_count=1,
        statement_count=1,
        gateway_first_id=17,
    ),
]


def test_report_fields_are_design_section_6():
    assert list(REPORT_FIELDS) == DESIGN_KEYS
    for row in ROWS:
        assert list(row.as_dict()) == DESIGN_KEYS


def test_jsonl_keys_order_and_integers():
    out = io.StringIO()
    assert write_jsonl(ROWS, out) == 3
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    docs = [json.loads(line) for line in lines]
    for doc in docs:
        assert list(doc) == DESIGN_KEYS
    assert docs[0] == {
        "kind": "duplicate_in_gateway",
        "provider_reference": "r3",
        "transaction_type": "capture",
        "gateway_status": "captured",
        "statement_status": "captured",
        "gateway_amount_minor": 1600,
        "statement_amount_minor": 700,
        "divergent_amount_minor": 900,
        "currency": "BRL",
    }
    # integers stay integers: exact beyond 2**53, no "1.0e16", no decimal point
    assert docs[1]["divergent_amount_minor"] == BIG and type(docs[1]["divergent_amount_minor"]) is int
    assert f'"divergent_amount_minor":{BIG}' in lines[1]
    assert docs[1]["gateway_amount_minor"] is None and docs[1]["gateway_status"] is None
    assert '"gateway_amount_minor":null' in lines[1]
    assert docs[2]["provider_reference"] == 'ref,with "quotes" and ção'
    assert "ção" in lines[2]  # not escaped


def test_jsonl_empty():
    out = io.StringIO()
    assert write_jsonl([], out) == 0
    assert out.getvalue() == ""


def test_csv_header_and_values():
    out = io.StringIO()
    assert write_csv(iter(ROWS), out) == 3
    text = out.getvalue()
    assert text.splitlines()[0] == ",".join(DESIGN_KEYS)
    records = list(csv.DictReader(io.StringIO(text)))
    assert [r["kind"] for r in records] == ["duplicate_in_gateway", "missing_in_gateway", "amount_mismatch"]
    assert records[1]["gateway_amount_minor"] == "" and records[1]["gateway_status"] == ""
    assert records[1]["statement_amount_minor"] == str(BIG)
    assert records[2]["provider_reference"] == 'ref,with "quotes" and ção'
    assert records[2]["divergent_amount_minor"] == "56"


def test_csv_empty_has_header_only():
    out = io.StringIO()
    assert write_csv([], out) == 0
    assert out.getvalue() == ",".join(DESIGN_KEYS) + "\n"


def test_table_contains_the_numbers():
    out = io.StringIO()
    assert write_table(ROWS, out) == 3
    text = out.getvalue()
    for expected in (
        "duplicate_in_gateway",
        "R$ 16,00",
        "R$ 7,00",
        "R$ 9,00",
        "r9",
        "R$ 90.071.992.547.409,93",
        "USD 0,56",
    ):
        assert expected in text
    assert "USD 1.234,56" in text and "USD 1.234,00" in text


def test_table_amounts_carry_their_own_currency_and_decimals():
    rows = [
        DivergenceRow(
            kind=DivergenceKind.CURRENCY_MISMATCH,
            provider_reference="c1",
            transaction_type="capture",
            gateway_status="captured",
            statement_status="captured",
            gateway_amount_minor=1234,
            statement_amount_minor=1234,
            divergent_amount_minor=1234,
            currency="JPY",
            statement_currency="BHD",
            gateway_count=1,
            statement_count=1,
        ),
        DivergenceRow(
            kind=DivergenceKind.DUPLICATE_IN_GATEWAY,
            provider_reference="d1",
            transaction_type="capture",
            gateway_status="captured",
            statement_status="captured",
            gateway_amount_minor=1000,
            statement_amount_minor=1000,
            divergent_amount_minor=0,
            currency="BRL",
            other_amounts={"EUR": 250},
            gateway_count=2,
            statement_count=1,
        ),
    ]
    out = io.StringIO()
    write_table(rows, out)
    text = out.getvalue()
    assert "JPY 1.234" in text and "BHD 1,234" in text
    assert "R$ 0,00 + EUR 2,50" in text
    en = io.StringIO()
    write_table(rows, en, locale="en")
    assert "JPY 1,234" in en.getvalue() and "BHD 1.234" in en.getvalue()


def test_table_batches_keep_every_row():
    rows = [
        DivergenceRow(
            kind=DivergenceKind.STATUS_MISMATCH,
            provider_reference=f"ref{i:03d}",
            transaction_type="capture",
            gateway_status="a",
            statement_status="b",
            gateway_amount_minor=i,
            statement_amount_minor=i,
            divergent_amount_minor=i,
            currency="BRL",
        )
        for i in range(7)
    ]
    out = io.StringIO()
    assert write_table(rows, out, batch=3) == 7
    for i in range(7):
        assert f"ref{i:03d}" in out.getvalue()


def test_table_empty_says_so():
    out = io.StringIO()
    assert write_table([], out) == 0
    assert "No divergence" in out.getvalue()


def test_render_rows_dispatch():
    for fmt in ("jsonl", "csv", "table"):
        out = io.StringIO()
        assert render_rows(ROWS, out, fmt) == 3
        assert "r9" in out.getvalue()
    with pytest.raises(ValueError, match="xml"):
        render_rows(ROWS, io.StringIO(), "xml")


def test_from_db_builds_ints():
    row = DivergenceRow.from_db(
        (
            "missing_in_statement",
            "r1",
            "capture",
            "captured",
            None,
            10**15,
            None,
            10**15,
            "BRL",
            1,
            None,
            42,
            None,
            None,
        )
    )
    assert row.kind is DivergenceKind.MISSING_IN_STATEMENT
    assert row.gateway_amount_minor == 10**15 and type(row.gateway_amount_minor) is int
    assert row.statement_amount_minor is None
    assert (row.gateway_count, row.statement_count, row.gateway_first_id) == (1, 0, 42)


# -- numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("divergent", "gateway", "expected"),
    [
        (1, 3, 33.3333),
        (2, 3, 66.6667),
        (1, 1, 100.0),
        (0, 5, 0.0),
        (1, 8, 12.5),
        (1, 2_000_000, 0.0001),  # exactly 0.00005: half-up, not half-even
        (3, 2_000_000, 0.0002),  # exactly 0.00015
        (1, 2_000_001, 0.0),  # just below the half
        (5, 6, 83.3333),
        (1, 6, 16.6667),
        (7, 3, 233.3333),
        (BIG, BIG, 100.0),
        (1, BIG, 0.0),
        (2200, 3100, 70.9677),
    ],
)
def test_divergence_pct_half_up_4_decimals(divergent, gateway, expected):
    assert divergence_pct(divergent, gateway) == expected


def test_divergence_pct_none_without_gateway_amount():
    assert divergence_pct(0, 0) is None
    assert divergence_pct(500, 0) is None


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (0, "BRL", "R$ 0,00"),
        (5, "BRL", "R$ 0,05"),
        (123_456, "BRL", "R$ 1.234,56"),
        (-123_456, "BRL", "-R$ 1.234,56"),
        (BIG, "EUR", "EUR 90.071.992.547.409,93"),
        (10**15 + 1, "BRL", "R$ 10.000.000.000.000,01"),
        (2**63 - 1, "BRL", "R$ 92.233.720.368.547.758,07"),
        (2**63 - 1, "JPY", "JPY 9.223.372.036.854.775.807"),
    ],
)
def test_amounts_are_formatted_exactly_beyond_float_precision(amount, currency, expected):
    assert format_money(amount, currency) == expected


# -- summary -------------------------------------------------------------------------


def _summary(**kwargs) -> DivergenceSummary:
    base = {
        "psp": "stripe",
        "window": W,
        "gateway_count": 4,
        "gateway_amount_minor": 3,
        "by_kind": {
            DivergenceKind.STATUS_MISMATCH: KindTotal(1, 1),
            DivergenceKind.DUPLICATE_IN_GATEWAY: KindTotal(2, 1),
        },
        "lag_cycles": 0,
    }
    base.update(kwargs)
    return DivergenceSummary.in_one_currency(**base)


def test_summary_figures_and_dict():
    summary = _summary()
    assert summary.divergent_count == 3
    assert summary.divergent_amount_minor == 2
    assert summary.divergence_pct == 66.6667
    doc = summary.as_dict()
    for key in (
        "psp",
        "window_start",
        "window_end",
        "gateway_count",
        "gateway_amount_minor",
        "divergent_count",
        "divergent_amount_minor",
        "divergence_pct",
        "by_kind",
        "alert",
        "recovered",
    ):
        assert key in doc
    assert doc["window_start"] == "2026-11-20T10:00:00+00:00"
    assert list(doc["by_kind"]) == ["duplicate_in_gateway", "status_mismatch"]
    assert doc["by_kind"]["duplicate_in_gateway"] == {"count": 2, "amount_minor": 1}
    assert doc["alert"] is False and doc["recovered"] is True
    assert json.loads(json.dumps(doc)) == doc


def test_summary_alert_and_recovered_follow_thresholds():
    big = _summary(by_kind={DivergenceKind.AMOUNT_MISMATCH: KindTotal(1, 500_001)}, gateway_amount_minor=0)
    assert big.alert and [r.value for r in big.alert_reasons] == ["amount"]
    assert big.recovered is False
    assert big.divergence_pct is None and big.as_dict()["divergence_pct"] is None
    lag = _summary(lag_cycles=None)
    assert lag.alert and lag.as_dict()["alert_reasons"] == ["lag"]
    many = _summary(by_kind={DivergenceKind.AMOUNT_MISMATCH: KindTotal(10, 10)})
    assert many.recovered is False
    custom = _summary(thresholds=Thresholds(alert_amount_minor=1))
    assert custom.alert and custom.as_dict()["alert_reasons"] == ["amount"]


def test_summary_table_lists_every_kind_and_totals():
    text = summary_table(
        _summary(
            gateway_amount_minor=BIG,
            by_kind={DivergenceKind.MISSING_IN_GATEWAY: KindTotal(3, 123_456)},
            lag_cycles=None,
        )
    )
    for kind in DivergenceKind:
        assert kind.value in text
    assert "R$ 1.234,56" in text
    assert "R$ 90.071.992.547.409,93" in text
    assert "never reconciled" in text
    assert "YES" in text
