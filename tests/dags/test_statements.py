"""Strict validation of PSP statements, and the cycle a run reconciles (pure domain)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from airflow_recon_provider.reconciliation.errors import WindowError
from airflow_recon_provider.reconciliation.schedule import parse_cycle_start, resolve_cycle
from airflow_recon_provider.reconciliation.statements import (
    StatementFormatError,
    StatementPage,
    assemble_statement,
    parse_statement_page,
)
from airflow_recon_provider.reconciliation.window import Window

CYCLE = Window.parse("2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z")


def line(**overrides):
    base = {
        "provider_reference": "r1",
        "transaction_type": "capture",
        "status": "captured",
        "amount_minor": 1050,
        "currency": "brl",
        "occurred_at": "2026-11-20T07:15:00-03:00",
    }
    base.update(overrides)
    return base


def page(*lines, **extra):
    return {"statement_id": "st-1", "lines": list(lines), **extra}


def test_valid_page_is_normalised():
    parsed = parse_statement_page(page(line(), line(provider_reference="r2")), psp="stripe", cycle=CYCLE)
    first = parsed.lines[0]
    assert parsed.statement_id == "st-1" and parsed.next_page is None
    assert first.currency == "BRL"
    assert first.occurred_at == datetime(2026, 11, 20, 10, 15, tzinfo=UTC)
    assert first.amount_minor == 1050 and type(first.amount_minor) is int
    with pytest.raises(AttributeError):
        first.amount_minor = 1  # frozen


@pytest.mark.parametrize("amount", [10.5, 1050.0, "1050", True, None, 2**63])
def test_amount_must_be_an_integer_and_the_error_names_the_line(amount):
    with pytest.raises(StatementFormatError) as err:
        parse_statement_page(
            page(line(), line(provider_reference="r2", amount_minor=amount)), psp="stripe", cycle=CYCLE
        )
    message = str(err.value)
    assert "line 2" in message and "'r2'" in message and "amount_minor" in message


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"transaction_type": "chargeback"}, "transaction_type 'chargeback'"),
        ({"currency": "R$"}, "currency"),
        ({"currency": "BRLX"}, "currency"),
        ({"occurred_at": "2026-11-20T10:15:00"}, "no timezone"),
        ({"occurred_at": "yesterday"}, "not an ISO 8601"),
        ({"occurred_at": "2026-11-20T11:00:00Z"}, "outside the reconciliation cycle"),
        ({"occurred_at": "2026-11-20T09:59:59Z"}, "outside the reconciliation cycle"),
        ({"provider_reference": ""}, "provider_reference must be a non-empty text"),
        ({"provider_reference": "   "}, "provider_reference must be a non-empty text"),
        ({"status": None}, "status must be a non-empty text"),
        ({"provider_reference": "a\x00b"}, "NUL"),
    ],
)
def test_malformed_lines_are_refused(overrides, fragment):
    with pytest.raises(StatementFormatError, match="line 1") as err:
        parse_statement_page(page(line(**overrides)), psp="stripe", cycle=CYCLE)
    assert fragment in str(err.value)


def test_missing_fields_and_bad_shapes():
    incomplete = line()
    del incomplete["currency"]
    with pytest.raises(StatementFormatError, match="missing field"):
        parse_statement_page(page(incomplete), psp="stripe", cycle=CYCLE)
    with pytest.raises(StatementFormatError, match="JSON object"):
        parse_statement_page(["not", "an", "object"], psp="stripe", cycle=CYCLE)
    with pytest.raises(StatementFormatError, match="statement_id"):
        parse_statement_page({"lines": []}, psp="stripe", cycle=CYCLE)
    with pytest.raises(StatementFormatError, match="lines must be a JSON list"):
        parse_statement_page({"statement_id": "s", "lines": {}}, psp="stripe", cycle=CYCLE)
    with pytest.raises(StatementFormatError, match="next_page"):
        parse_statement_page(page(next_page=""), psp="stripe", cycle=CYCLE)
    with pytest.raises(StatementFormatError, match="line 1"):
        parse_statement_page(page("a line as text"), psp="stripe", cycle=CYCLE)


def test_extra_fields_are_ignored_and_duplicates_kept():
    parsed = parse_statement_page(page(line(fee_minor=3), line()), psp="stripe", cycle=CYCLE)
    assert len(parsed.lines) == 2  # a duplicate is a divergence to classify, not to hide


def test_line_numbers_run_across_pages_and_pages_must_agree():
    with pytest.raises(StatementFormatError, match="line 7"):
        parse_statement_page(page(line(amount_minor=1.5)), psp="stripe", cycle=CYCLE, page=2, first_line=7)
    one = StatementPage("st-1", (), "p1")
    other = StatementPage("st-2", (), None)
    with pytest.raises(StatementFormatError, match="changed while it was being read"):
        assemble_statement("stripe", CYCLE, [one, other])
    joined = assemble_statement("stripe", CYCLE, [one, StatementPage("st-1", (), None)])
    assert joined.pages == 2 and joined.statement_id == "st-1" and len(joined) == 0


def test_resolve_cycle():
    start = datetime(2026, 11, 20, 10, tzinfo=UTC)
    end = datetime(2026, 11, 20, 11, tzinfo=UTC)
    assert resolve_cycle(data_interval_start=start, data_interval_end=end) == CYCLE
    assert resolve_cycle(cycle_start="2026-11-20T07:00:00-03:00") == CYCLE
    # no data interval (manual run without logical date): the last complete cycle
    assert resolve_cycle(run_after=datetime(2026, 11, 20, 11, 42, tzinfo=UTC)) == CYCLE
    assert resolve_cycle(data_interval_start=end, data_interval_end=end, run_after=end) == CYCLE
    with pytest.raises(WindowError, match="not the start of an hourly cycle"):
        parse_cycle_start("2026-11-20T10:30:00Z")
    with pytest.raises(WindowError, match="not the start of an hourly cycle"):
        parse_cycle_start("2026-11-20T10:00:00+05:30")
    with pytest.raises(WindowError, match="no timezone"):
        parse_cycle_start("2026-11-20T10:00:00")
    with pytest.raises(WindowError, match="without cycle_start"):
        resolve_cycle(cycle_end="2026-11-20T11:00:00Z")
