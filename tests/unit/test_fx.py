"""FX rates coming in (reconciliation/fx.py): the rates CSV, line by line, and the PTAX
answer. Pure: no database, no Airflow."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from airflow_recon_provider.reconciliation.fx import (
    DEFAULT_DAILY_CURRENCIES,
    FxFileError,
    PtaxFormatError,
    PtaxNotApplicableError,
    RatesFile,
    parse_currency_list,
    parse_day,
    parse_ptax_day,
    parse_rates_csv,
    parse_valid_from,
    ptax_day_endpoint,
    quotation_day,
    table_conflict_error,
)
from airflow_recon_provider.reconciliation.money import CurrencyError, FxRate, FxRateError

HEADER = "currency,rate,valid_from,source\n"
GOOD = "USD,5.4312,2026-12-04,BCB PTAX\n"


def refused(text: str | bytes, **kwargs) -> FxFileError:
    with pytest.raises(FxFileError) as info:
        parse_rates_csv(text, name="rates.csv", reporting_currency="BRL", **kwargs)
    assert isinstance(info.value, FxRateError)  # callers may catch the money module's error
    return info.value


# -- the rates file ------------------------------------------------------------------------


def test_a_good_file_gives_exact_rates_with_their_lines():
    text = (
        HEADER
        + "USD,5.4312,2026-12-04,BCB PTAX\n"
        + "\n"  # a blank line is skipped, yet counted
        + "eur, 6.287500 ,2026-12-04T13:10:02-03:00,treasury\n"
        + '"JPY","0.036104","2026-12-04T16:10:00Z","BCB PTAX, closing"\n'
    )
    rates = parse_rates_csv(text, name="rates.csv", reporting_currency="BRL")
    assert [(r.line, r.rate.currency) for r in rates] == [(2, "USD"), (4, "EUR"), (5, "JPY")]
    usd, eur, jpy = rates.rates
    assert usd.rate == Decimal("5.4312") and isinstance(usd.rate, Decimal)
    assert usd.valid_from == datetime(2026, 12, 4, tzinfo=UTC)  # a plain date: 00:00 UTC
    assert eur.rate == Decimal("6.287500") and eur.valid_from == datetime(2026, 12, 4, 16, 10, 2, tzinfo=UTC)
    assert jpy.rate == Decimal("0.036104") and jpy.source == "BCB PTAX, closing"
    assert rates.count_by_currency() == {"EUR": 1, "JPY": 1, "USD": 1}


def test_bytes_with_a_bom_and_crlf_are_read():
    rates = parse_rates_csv(("\ufeff" + HEADER + GOOD).replace("\n", "\r\n").encode())
    assert rates.rates[0].rate == Decimal("5.4312")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("USD,-1,2026-12-04,x", "rates.csv line 4: rate '-1' must be a positive decimal"),
        ("USD,0,2026-12-04,x", "rates.csv line 4: rate '0' must be a positive decimal"),
        ("USD,0.0000,2026-12-04,x", "rate '0.0000' must be a positive decimal"),
        ("USD,NaN,2026-12-04,x", "rate 'NaN' must be a positive decimal"),
        ("USD,Infinity,2026-12-04,x", "rate 'Infinity' must be a positive decimal"),
        ("USD,-Infinity,2026-12-04,x", "rate '-Infinity' must be a positive decimal"),
        ("USD,abc,2026-12-04,x", "rate 'abc' must be a positive decimal"),
        ("USD,1e3,2026-12-04,x", "rate '1e3' must be a positive decimal"),
        ("USD,5_000,2026-12-04,x", "rate '5_000' must be a positive decimal"),
        ("USD,,2026-12-04,x", "rate '' must be a positive decimal"),
        ("ZZZ,1,2026-12-04,x", "rates.csv line 4: currency 'ZZZ' is not an ISO 4217 currency code"),
        ("XAU,1,2026-12-04,x", "currency 'XAU' is not an ISO 4217 currency code with minor units"),
        ("US,1,2026-12-04,x", "currency 'US' is not an ISO 4217"),
        ("BRL,1,2026-12-04,x", "BRL is the reporting currency (rate 1): it needs no rate"),
        ("USD,1,2026-12-04T10:00:00,x", "valid_from '2026-12-04T10:00:00' has no timezone"),
        ("USD,1,04/12/2026,x", "valid_from '04/12/2026' is not a date YYYY-MM-DD"),
        ("USD,1,2026-02-30,x", "valid_from '2026-02-30' is not a date"),
        ("USD,1,2026-12-04T25:00Z,x", "valid_from '2026-12-04T25:00Z' is not a date"),
        ("USD,1,,x", "valid_from '' is not a date"),
        ("USD,1,2026-12-04,", "source is empty"),
        ("USD,1,2026-12-04", "rates.csv line 4: expected 4 columns (currency,rate,valid_from,source), got 3"),
        ("USD,1,2026-12-04,x,extra", "expected 4 columns (currency,rate,valid_from,source), got 5"),
    ],
)
def test_one_bad_line_refuses_the_whole_file_naming_it(row, message):
    error = refused(HEADER + GOOD + "EUR,6.2,2026-12-04,x\n" + row + "\n")
    assert message in str(error)
    assert error.line == 4
    assert str(error).endswith("nothing was loaded")


def test_the_first_bad_line_is_named_and_the_others_counted():
    error = refused(HEADER + "USD,-1,2026-12-04,x\n" + GOOD + "EUR,0,2026-12-04,x\nJPY,NaN,2026-12-04,x\n")
    assert str(error).startswith("rates.csv line 2: rate '-1' must be a positive decimal")
    assert "(2 more bad lines after it)" in str(error)
    assert [line for line, _ in error.problems] == [2, 4, 5]


def test_a_key_twice_in_the_file_is_refused_at_its_second_line_even_written_otherwise():
    error = refused(
        HEADER
        + "USD,5.43,2026-12-04,a\n"
        + "EUR,6.28,2026-12-04,a\n"
        + "USD,5.44,2026-12-03T21:00:00-03:00,b\n"  # the same instant as 2026-12-04 (UTC)
    )
    assert str(error).startswith("rates.csv line 4: USD valid from 2026-12-04T00:00:00Z is already on line 2")
    # the same rate twice is a duplicate too; another currency at that time is not
    parse_rates_csv(HEADER + "USD,5.43,2026-12-04,a\nEUR,5.43,2026-12-04,a\n")
    assert refused(HEADER + GOOD + GOOD).line == 3


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("", "rates.csv is empty: expected the header currency,rate,valid_from,source on line 1", None),
        ("\n\n", "rates.csv is empty", None),
        (HEADER, "rates.csv has no rates after its header (line 1)", 1),
        ("currency,rate,valid_from\nUSD,1,2026-12-04\n", "rates.csv line 1: the header must be", 1),
        ("currency;rate;valid_from;source\n", "rates.csv line 1: the header must be", 1),
        (GOOD, "rates.csv line 1: the header must be currency,rate,valid_from,source", 1),
        ("\n" + HEADER + GOOD, "rates.csv line 2: the header must be", 2),
        (HEADER + 'USD,"5.1,2026-12-04,x\n', "rates.csv line 2: not valid CSV", 2),
    ],
)
def test_empty_files_and_bad_headers(text, message, line):
    error = refused(text)
    assert str(error).startswith(message)
    assert error.line == line


def test_a_file_that_is_not_utf8_is_refused():
    assert "is not UTF-8 text" in str(refused(HEADER.encode() + b"USD,5.4,2026-12-04,caf\xe9\n"))


def test_valid_from_forms():
    assert parse_valid_from("2026-12-04") == datetime(2026, 12, 4, tzinfo=UTC)
    assert parse_valid_from("2026-12-04T13:10:02.5-03:00") == datetime(
        2026, 12, 4, 16, 10, 2, 500000, tzinfo=UTC
    )
    assert parse_valid_from("2026-12-04 16:10Z") == datetime(2026, 12, 4, 16, 10, tzinfo=UTC)
    assert parse_valid_from("2026-12-04T13:10-0300") == datetime(2026, 12, 4, 16, 10, tzinfo=UTC)
    for bad in ("2026-12-04T13:10", "2026-W49-5", "20261204", "2026-12-04T10:00+24:00", "today"):
        with pytest.raises(FxRateError):
            parse_valid_from(bad)


def test_table_conflict_names_the_file_line_and_the_stored_row():
    rates = parse_rates_csv(HEADER + "USD,5.43,2026-12-03,a\nEUR,6.28,2026-12-04,a\nUSD,5.44,2026-12-04,a\n")
    stored = [
        (
            "EUR",
            Decimal("6.1000"),
            datetime(2026, 12, 4, tzinfo=UTC),
            "BCB PTAX",
            datetime(2026, 12, 5, tzinfo=UTC),
        ),
        ("USD", Decimal("5.50"), datetime(2026, 12, 4, tzinfo=UTC), "old", datetime(2026, 12, 5, tzinfo=UTC)),
    ]
    error = table_conflict_error(rates, stored)
    assert str(error) == (
        "rates.csv line 3: EUR valid from 2026-12-04T00:00:00Z is already in recon.fx_rates "
        "(rate 6.1, source 'BCB PTAX', loaded 2026-12-05T00:00:00Z) (1 more line of the file also in "
        "the table); nothing was loaded"
    )
    assert error.line == 3 and [line for line, _ in error.problems] == [3, 4]
    assert table_conflict_error(rates, []) is None


def test_an_in_memory_set_refuses_a_key_twice():
    rate = FxRate("USD", Decimal("5.4"), datetime(2026, 12, 4, tzinfo=UTC), "x")
    with pytest.raises(
        FxFileError, match="rates line 2: USD valid from 2026-12-04T00:00:00Z is already on line 1"
    ):
        RatesFile.of([rate, rate])


# -- the daily DAG's inputs ----------------------------------------------------------------


def test_currency_lists():
    assert parse_currency_list("usd, EUR;jpy  EUR") == ("USD", "EUR", "JPY")
    assert parse_currency_list('["GBP", "usd"]', reporting_currency="BRL") == ("GBP", "USD")
    assert parse_currency_list(list(DEFAULT_DAILY_CURRENCIES)) == DEFAULT_DAILY_CURRENCIES
    for bad, message in [
        ("USD,BRL", "BRL is the reporting currency"),
        ("USD,XAU", "currency 'XAU' is not an ISO 4217"),
        ("", "currency list is empty"),
        ("[1, 2]", "must be a list of ISO 4217 codes"),
        ("[USD", "is not a JSON list"),
    ]:
        with pytest.raises(FxRateError, match=message.replace("(", r"\(")):
            parse_currency_list(bad, reporting_currency="BRL")


def test_day_of_a_daily_run_is_the_brasilia_day_of_its_interval():
    # the Sao Paulo timetable's run of 2026-12-04: [03:00Z, next day 03:00Z)
    start, end = datetime(2026, 12, 4, 3, tzinfo=UTC), datetime(2026, 12, 5, 3, tzinfo=UTC)
    assert quotation_day(start, end, fallback=end) == date(2026, 12, 4)
    # a UTC interval of the same day gives the same day
    assert quotation_day(
        datetime(2026, 12, 4, tzinfo=UTC), datetime(2026, 12, 5, tzinfo=UTC), fallback=end
    ) == (date(2026, 12, 4))
    # no interval: the Brasilia day before the run
    assert quotation_day(None, None, fallback=datetime(2026, 12, 5, 2, tzinfo=UTC)) == date(2026, 12, 3)
    assert parse_day("2026-12-04") == date(2026, 12, 4)
    for bad in ("2026-12-32", "12-04-2026", datetime(2026, 12, 4, tzinfo=UTC)):
        with pytest.raises(FxRateError):
            parse_day(bad)


# -- PTAX ----------------------------------------------------------------------------------

DAY = date(2026, 12, 4)


def bulletin(kind: str, selling: str, at: str, buying: str = "1.0") -> str:
    return (
        f'{{"paridadeCompra": 1.0, "paridadeVenda": 1.0, "cotacaoCompra": {buying}, '
        f'"cotacaoVenda": {selling}, "dataHoraCotacao": "{at}", "tipoBoletim": "{kind}"}}'
    )


def answer(*bulletins: str) -> str:
    return '{"@odata.context": "x", "value": [' + ", ".join(bulletins) + "]}"


FULL_DAY = answer(
    bulletin("Abertura", "6.2913", "2026-12-04 10:09:27.331"),
    bulletin("Intermediário", "6.2856", "2026-12-04 11:09:31.102"),
    bulletin("Fechamento PTAX", "6.28750000000000000001", "2026-12-04 13:10:02.417", buying="6.2862"),
    bulletin("Intermediário", "6.2888", "2026-12-04 12:09:29.864"),
)


def test_ptax_takes_the_closing_bulletins_selling_rate_exactly_in_utc():
    rate = parse_ptax_day(FULL_DAY, currency="eur", day=DAY)
    assert rate == FxRate(
        currency="EUR",
        # parse_float=Decimal: no float ever rounds the quotation
        rate=Decimal("6.28750000000000000001"),
        valid_from=datetime(2026, 12, 4, 16, 10, 2, 417000, tzinfo=UTC),  # 13:10 in Brasília
        source="BCB PTAX Fechamento PTAX",
    )


def test_ptax_without_a_closing_bulletin_takes_the_latest():
    payload = answer(
        bulletin("Abertura", "5.40", "2026-12-04 10:09:27"),
        bulletin("Intermediário", "5.42", "2026-12-04 12:09:29.9"),
        bulletin("Intermediário", "5.41", "2026-12-04 11:09:31.1"),
    )
    rate = parse_ptax_day(payload, currency="USD", day=DAY)
    assert (rate.rate, rate.source) == (Decimal("5.42"), "BCB PTAX Intermediário")
    assert rate.valid_from == datetime(2026, 12, 4, 15, 9, 29, 900000, tzinfo=UTC)


def test_ptax_day_without_bulletin_is_none():
    assert parse_ptax_day('{"value": []}', currency="USD", day=date(2026, 12, 5)) is None


def test_ptax_integers_are_exact_too():
    rate = parse_ptax_day(
        answer(bulletin("Fechamento PTAX", "5", "2026-12-04 13:10:00")), currency="USD", day=DAY
    )
    assert rate.rate == Decimal(5) and isinstance(rate.rate, Decimal)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not json", "is not valid JSON"),
        ("[]", 'has no "value" list'),
        ('{"value": {}}', 'has no "value" list'),
        ('{"value": [1]}', "bulletin 1 is not an object"),
        (answer(bulletin("Fechamento PTAX", "NaN", "2026-12-04 13:10:00")), "is not valid JSON"),
        (answer(bulletin("Fechamento PTAX", "Infinity", "2026-12-04 13:10:00")), "is not valid JSON"),
        (
            answer(bulletin("Fechamento PTAX", '"5.4"', "2026-12-04 13:10:00")),
            "cotacaoVenda '5.4' is not a number",
        ),
        (
            answer(bulletin("Fechamento PTAX", "true", "2026-12-04 13:10:00")),
            "cotacaoVenda True is not a number",
        ),
        (answer(bulletin("Fechamento PTAX", "0", "2026-12-04 13:10:00")), "is not a positive rate"),
        (answer(bulletin("Fechamento PTAX", "-5.4", "2026-12-04 13:10:00")), "is not a positive rate"),
        (answer(bulletin("Fechamento PTAX", "5.4", "04/12/2026 13:10")), "is not a date-time"),
        (
            answer(bulletin("Fechamento PTAX", "5.4", "2026-12-03 13:10:00")),
            "is of 2026-12-03, not of the day",
        ),
        (answer(bulletin("", "5.4", "2026-12-04 13:10:00")), "tipoBoletim '' is not a bulletin type"),
    ],
)
def test_ptax_bad_answers(payload, message):
    with pytest.raises(PtaxFormatError, match=message.replace("(", r"\(")):
        parse_ptax_day(payload, currency="USD", day=DAY)


def test_ptax_only_serves_a_brl_reporting_currency():
    with pytest.raises(PtaxNotApplicableError, match="reporting currency is USD"):
        parse_ptax_day(FULL_DAY, currency="EUR", day=DAY, reporting_currency="USD")
    with pytest.raises(PtaxNotApplicableError, match="BRL is the reporting currency"):
        parse_ptax_day(FULL_DAY, currency="BRL", day=DAY)


def test_ptax_endpoint_is_the_odata_resource_with_checked_values():
    assert ptax_day_endpoint("eur", DAY) == (
        "CotacaoMoedaDia(moeda=@moeda,dataCotacao=@dataCotacao)?@moeda='EUR'&@dataCotacao='12-04-2026'"
        "&$format=json"
    )
    with pytest.raises(CurrencyError):
        ptax_day_endpoint("EUR'&$top=1", DAY)
    assert json.loads(FULL_DAY)  # the fixture itself is valid JSON
