"""CSV files people open in a spreadsheet keep the data's text as text (CSV injection): the
PSP ticket CSV like the dry-run CSV (tests/corrections/test_correction_policy.py)."""

from __future__ import annotations

import csv
import io

import pytest

from airflow_recon_provider.reconciliation.kinds import DivergenceKind
from airflow_recon_provider.reconciliation.psp_ticket import write_ticket_csv
from airflow_recon_provider.reconciliation.report import DivergenceRow
from airflow_recon_provider.reconciliation.spreadsheet import safe_cell


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x","ok")', '\'=HYPERLINK("http://x","ok")'),
        ("+1+1", "'+1+1"),
        ("-1+1", "'-1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("pi_123", "pi_123"),
        (None, ""),
        (-1500, -1500),  # an amount stays a number
    ],
)
def test_safe_cell(value, cell):
    assert safe_cell(value) == cell


def test_ticket_csv_keeps_formula_like_text_as_text_and_amounts_as_numbers():
    row = DivergenceRow(
        kind=DivergenceKind.STATUS_MISMATCH,
        provider_reference='=HYPERLINK("http://evil","refund")',
        transaction_type="capture",
        gateway_status="captured",
        statement_status="@cmd",
        gateway_amount_minor=1500,
        statement_amount_minor=1500,
        divergent_amount_minor=1500,
        currency="BRL",
    )
    out = io.StringIO()
    counts = write_ticket_csv([row], out)
    (line,) = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert line["provider_reference"] == '\'=HYPERLINK("http://evil","refund")'
    assert line["statement_status"] == "'@cmd" and line["gateway_status"] == "captured"
    assert line["divergent_amount_minor"] == "1500" and line["currency"] == "BRL"
    assert counts.rows == 1 and counts.by_currency["BRL"].divergent_amount_minor == 1500
