"""Money in its own currency (DESIGN 3a): codes, formatting, and the converted summary.

The converted figures of a mixed-currency summary are checked against a hand computation:
``round_half_even(T * rate * 10^(e_r - e_c))`` once per currency total, in exact
``Decimal`` arithmetic (a context that traps any inexact step) with the ISO 4217 exponents
written out here, never by calling the module's own conversion.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_recon_provider.reconciliation import DivergenceKind, DivergenceSummary, KindTotal, Window
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS
from airflow_recon_provider.reconciliation.money import (
    Converter,
    CurrencyError,
    FxRate,
    FxRateError,
    check_currency,
    convert_minor,
    exponent,
    format_money,
)
from airflow_recon_provider.reconciliation.report import (
    CurrencyFigures,
    divergence_pct,
    summary_from_results,
)
from airflow_recon_provider.reconciliation.thresholds import AlertReason, Thresholds

#: ISO 4217 exponents, written out (not read from the module under test)
EXPONENTS = {"JPY": 0, "BRL": 2, "EUR": 2, "USD": 2, "BHD": 3, "KWD": 3}
WINDOW = Window(datetime(2026, 12, 4, 10, tzinfo=UTC), datetime(2026, 12, 4, 11, tzinfo=UTC))
RATE_FROM = datetime(2026, 12, 3, 16, tzinfo=UTC)


# -- codes -------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["XYZ", "XAU", "XDR", "", "   ", "BR", "BRLX", "B1L", "ÇAB", None, 12])
def test_check_currency_refuses_what_is_not_an_iso_currency_with_minor_units(code):
    with pytest.raises(CurrencyError):
        check_currency(code)


@pytest.mark.parametrize(
    ("code", "expected"), [("BRL", "BRL"), ("brl", "BRL"), ("Eur", "EUR"), (" usd ", "USD"), ("jpy", "JPY")]
)
def test_check_currency_reads_codes_as_upper_case(code, expected):
    assert check_currency(code) == expected


def test_exponents_are_iso_4217():
    for code, exp in EXPONENTS.items():
        assert exponent(code) == exp
        assert exponent(code.lower()) == exp
    assert exponent("XYZ") is None and exponent(None) is None and exponent("") is None


# -- formatting ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "pt_br", "en"),
    [
        (10417521, "BRL", "R$ 104.175,21", "BRL 104,175.21"),
        (-10417521, "BRL", "-R$ 104.175,21", "-BRL 104,175.21"),
        (5, "brl", "R$ 0,05", "BRL 0.05"),
        (961980, "EUR", "EUR 9.619,80", "EUR 9,619.80"),
        (-961980, "EUR", "-EUR 9.619,80", "-EUR 9,619.80"),
        (1234, "JPY", "JPY 1.234", "JPY 1,234"),
        (-1234567, "JPY", "-JPY 1.234.567", "-JPY 1,234,567"),
        (1234, "BHD", "BHD 1,234", "BHD 1.234"),
        (-5, "BHD", "-BHD 0,005", "-BHD 0.005"),
        (9007199254740993, "BRL", "R$ 90.071.992.547.409,93", "BRL 90,071,992,547,409.93"),
        (0, "JPY", "JPY 0", "JPY 0"),
        (None, "BRL", "-", "-"),
        (None, "JPY", "-", "-"),
    ],
)
def test_format_money_pt_br_and_en(amount, currency, pt_br, en):
    assert format_money(amount, currency) == pt_br  # pt-BR by default
    assert format_money(amount, currency, locale="pt_BR") == pt_br
    assert format_money(amount, currency, locale="pt-BR") == pt_br
    assert format_money(amount, currency, locale="en") == en


def test_format_money_never_guesses_the_decimals_of_an_unknown_currency():
    assert format_money(12345, "XYZ") == "12345 na menor unidade de XYZ (casas decimais desconhecidas)"
    assert format_money(12345, None) == "12345 na menor unidade de ? (casas decimais desconhecidas)"


# -- conversion --------------------------------------------------------------------------


def _hand(total: int, currency: str, rate: Decimal, reporting: str) -> int:
    """``round_half_even(T * rate * 10^(e_r - e_c))``: every step exact (Inexact traps),
    one rounding at the end."""
    with localcontext(Context(prec=80, traps=[Inexact])):
        value = Decimal(total) * rate * Decimal(10) ** (EXPONENTS[reporting] - EXPONENTS[currency])
    with localcontext(Context(prec=80)):
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@pytest.mark.parametrize(
    ("amount", "currency", "rate", "reporting", "expected"),
    [
        (1, "JPY", "0.035", "BRL", 4),  # 3.5 -> 4
        (1, "JPY", "0.025", "BRL", 2),  # 2.5 -> 2: half to even
        (-1, "JPY", "0.025", "BRL", -2),
        (-1, "JPY", "0.035", "BRL", -4),
        (1, "BHD", "14.5", "BRL", 1),  # 1.45 -> 1
        (5, "BHD", "1", "BRL", 0),  # 0.5 -> 0
        (15, "BHD", "1", "BRL", 2),  # 1.5 -> 2
        (100, "EUR", "6.25", "BRL", 625),
        (961980, "EUR", "6.2512", "BRL", 6013529),  # 6013529.376 -> 6013529
        (1, "BRL", "0.5", "JPY", 0),  # 0.005 yen
        (150, "BRL", "1", "JPY", 2),  # 1.5 -> 2
        (250, "BRL", "1", "JPY", 2),  # 2.5 -> 2
    ],
)
def test_convert_minor_rounds_half_even_once(amount, currency, rate, reporting, expected):
    assert _hand(amount, currency, Decimal(rate), reporting) == expected
    assert convert_minor(amount, currency, Decimal(rate), reporting) == expected


def test_a_rate_must_be_a_positive_decimal():
    for bad in (Decimal(0), Decimal("-1.5"), Decimal("NaN"), Decimal("Infinity"), 1.5, 2):
        with pytest.raises(FxRateError):
            FxRate("USD", bad, RATE_FROM, "test")


def test_converter_leaves_out_currencies_without_a_rate():
    conv = Converter("BRL", {"USD": FxRate("USD", Decimal("5.4321"), RATE_FROM, "t")})
    assert conv.convert(100, "BRL") == 100
    assert conv.convert(100, "USD") == 543
    assert conv.convert(100, "EUR") is None and not conv.can_convert("EUR")
    assert conv.total([("BRL", 100), ("USD", 100), ("EUR", 10**9)]) == 643


# -- the converted summary equals a hand computation --------------------------------------

#: amounts: small (so the recovery thresholds are crossed both ways), large, around 2**53
AMOUNTS = st.one_of(
    st.integers(min_value=-1_000, max_value=60_000),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.integers(min_value=2**53 - 3, max_value=2**53 + 3),
)
#: positive rates with up to 10 significant digits, from 1e-12 to ~1e10
RATES = st.builds(
    lambda digits, places: Decimal(digits).scaleb(-places),
    st.integers(min_value=1, max_value=9_999_999_999),
    st.integers(min_value=0, max_value=12),
)


@st.composite
def currency_figures(draw: st.DrawFn, currency: str) -> CurrencyFigures:
    kinds = draw(st.lists(st.sampled_from(ALL_KINDS), unique=True, max_size=4))
    by_kind = {}
    for kind in kinds:
        # a count of 0 with an amount: extra copies of duplicates of other currencies' keys
        count = draw(st.integers(min_value=0, max_value=12))
        by_kind[kind] = KindTotal(count, draw(AMOUNTS))
    return CurrencyFigures(
        currency,
        draw(st.integers(min_value=0, max_value=10**6)),
        draw(AMOUNTS),
        by_kind,
    )


@st.composite
def mixed_windows(draw: st.DrawFn) -> tuple[str, dict[str, CurrencyFigures], dict[str, FxRate], int]:
    reporting = draw(st.sampled_from(["BRL", "BRL", "USD", "JPY", "BHD"]))
    currencies = draw(st.lists(st.sampled_from(sorted(EXPONENTS)), unique=True, min_size=1, max_size=6))
    figures = {c: draw(currency_figures(c)) for c in currencies}
    rates = {}
    for c in EXPONENTS:
        # most currencies have a rate; some have none (a rate for the reporting currency
        # itself, when one is stored, is never used: its rate is 1)
        if draw(st.integers(min_value=0, max_value=4)):
            rates[c] = FxRate(c, draw(RATES), RATE_FROM - timedelta(hours=draw(st.integers(0, 48))), "test")
    lag = draw(st.sampled_from([0, 1, 2, 3, None]))
    return reporting, figures, rates, lag


def _expected(reporting: str, figures: dict[str, CurrencyFigures], rates: dict[str, FxRate]) -> dict:
    def conv(amount: int, currency: str) -> int | None:
        if currency == reporting:
            return amount
        if currency not in rates:
            return None
        return _hand(amount, currency, rates[currency].rate, reporting)

    def total(pairs) -> int:
        return sum(v for a, c in pairs if (v := conv(a, c)) is not None)

    by_kind: dict[DivergenceKind, list[int]] = {}
    for c, f in figures.items():
        for kind, t in f.by_kind.items():
            slot = by_kind.setdefault(kind, [0, 0])
            slot[0] += t.count
            slot[1] += conv(t.amount_minor, c) or 0
    unconverted = sorted(c for c in figures if conv(0, c) is None)
    return {
        "gateway_count": sum(f.gateway_count for f in figures.values()),
        "gateway_amount_minor": total((f.gateway_amount_minor, c) for c, f in figures.items()),
        "divergent_count": sum(t.count for f in figures.values() for t in f.by_kind.values()),
        "divergent_amount_minor": total(
            (sum(t.amount_minor for t in f.by_kind.values()), c) for c, f in figures.items()
        ),
        "by_kind": {k: tuple(v) for k, v in by_kind.items()},
        "unconverted": unconverted,
        "missing": any(t.count or t.amount_minor for c in unconverted for t in figures[c].by_kind.values()),
        "used": sorted(c for c in figures if c != reporting and c in rates),
    }


@settings(max_examples=400, deadline=None)
@given(case=mixed_windows())
def test_converted_figures_equal_a_hand_computation(case):
    reporting, figures, rates, lag = case
    thresholds = Thresholds()
    # through the summary statements' rows, as the hooks build it
    summary = summary_from_results(
        psp="stripe",
        window=WINDOW,
        totals=[(c, f.gateway_count, f.gateway_amount_minor) for c, f in figures.items()],
        by_kind_rows=[
            (c, k.value, t.count, t.amount_minor) for c, f in figures.items() for k, t in f.by_kind.items()
        ],
        last_success_end=None if lag is None else WINDOW.end - timedelta(hours=lag),
        reference=WINDOW.end,
        thresholds=thresholds,
        reporting_currency=reporting,
        fx_rates=list(rates.values()),
    )
    exp = _expected(reporting, figures, rates)

    assert summary.lag_cycles == lag
    assert summary.gateway_count == exp["gateway_count"]
    assert summary.gateway_amount_minor == exp["gateway_amount_minor"]
    assert summary.divergent_count == exp["divergent_count"]
    assert summary.divergent_amount_minor == exp["divergent_amount_minor"]
    assert {k: (t.count, t.amount_minor) for k, t in summary.by_kind.items()} == exp["by_kind"]
    assert summary.unconverted_currencies == exp["unconverted"]
    assert summary.fx_rate_missing is exp["missing"]
    # each (currency, kind) rounded separately: within one minor unit per pair of the total
    pairs = sum(len(f.by_kind) for c, f in figures.items() if c not in exp["unconverted"])
    assert abs(sum(t.amount_minor for t in summary.by_kind.values()) - exp["divergent_amount_minor"]) <= pairs

    reasons = []
    if exp["divergent_amount_minor"] > thresholds.alert_amount_minor:
        reasons.append("amount")
    if exp["missing"]:
        reasons.append("fx_rate_missing")
    if lag is None or lag > thresholds.alert_lag_cycles:
        reasons.append("lag")
    assert [r.value for r in summary.alert_reasons] == reasons
    assert summary.alert is bool(reasons)
    assert summary.recovered is (
        not exp["missing"]
        and exp["divergent_amount_minor"] < thresholds.recovered_amount_minor
        and exp["divergent_count"] < thresholds.recovered_count
    )
    if exp["missing"]:
        assert AlertReason.FX_RATE_MISSING in summary.alert_reasons and not summary.recovered

    doc = summary.as_dict()
    assert doc["reporting_currency"] == reporting
    assert doc["gateway_amount_minor"] == exp["gateway_amount_minor"]
    assert doc["divergent_amount_minor"] == exp["divergent_amount_minor"]
    assert doc["divergence_pct"] == divergence_pct(exp["divergent_amount_minor"], exp["gateway_amount_minor"])
    assert doc["unconverted_currencies"] == exp["unconverted"]
    assert sorted(doc["fx_rates"]) == exp["used"]  # only the rates used, never the reporting one's
    for c in exp["used"]:
        assert Decimal(doc["fx_rates"][c]["rate"]) == rates[c].rate
        assert doc["fx_rates"][c]["valid_from"] == rates[c].valid_from.isoformat()
    # by_currency: each currency in its own minor units, untouched
    assert sorted(doc["by_currency"]) == sorted(figures)
    for c, f in figures.items():
        got = doc["by_currency"][c]
        assert got["exponent"] == EXPONENTS[c]
        assert (got["gateway_count"], got["gateway_amount_minor"]) == (
            f.gateway_count,
            f.gateway_amount_minor,
        )
        assert got["divergent_count"] == sum(t.count for t in f.by_kind.values())
        assert got["divergent_amount_minor"] == sum(t.amount_minor for t in f.by_kind.values())
        assert got["by_kind"] == {
            k.value: {"count": t.count, "amount_minor": t.amount_minor} for k, t in f.by_kind.items()
        }
    # and the JSON reads back to the same summary (a trigger event, an XCom)
    assert DivergenceSummary.from_dict(doc, thresholds=thresholds).as_dict() == doc


@settings(max_examples=200, deadline=None)
@given(case=mixed_windows(), reporting=st.sampled_from(["BRL", "USD", "JPY", "BHD"]))
def test_a_window_only_in_the_reporting_currency_has_the_one_currency_figures(case, reporting):
    _, figures, rates, lag = case
    own = next(iter(figures.values()))
    fig = CurrencyFigures(reporting, own.gateway_count, own.gateway_amount_minor, own.by_kind)
    summary = DivergenceSummary(
        psp="stripe",
        window=WINDOW,
        by_currency={reporting: fig},
        lag_cycles=lag,
        reporting_currency=reporting,
        fx_rates=rates,  # rates of other currencies are there, and unused
    )
    one = DivergenceSummary.in_one_currency(
        psp="stripe",
        window=WINDOW,
        gateway_count=fig.gateway_count,
        gateway_amount_minor=fig.gateway_amount_minor,
        by_kind=fig.by_kind,
        currency=reporting,
        lag_cycles=lag,
        reporting_currency=reporting,
    )
    assert summary.as_dict() == one.as_dict()
    assert summary.gateway_amount_minor == fig.gateway_amount_minor
    assert summary.divergent_amount_minor == sum(t.amount_minor for t in fig.by_kind.values())
    assert summary.by_kind == fig.by_kind
    assert summary.divergence_pct == divergence_pct(summary.divergent_amount_minor, fig.gateway_amount_minor)
    assert summary.alert_reasons == Thresholds().alert_reasons(
        divergent_amount_minor=summary.divergent_amount_minor, lag_cycles=lag
    )
    assert summary.recovered is Thresholds().amounts_recovered(
        divergent_amount_minor=summary.divergent_amount_minor, divergent_count=fig.divergent_count
    )
    doc = summary.as_dict()
    assert doc["fx_rates"] == {} and doc["unconverted_currencies"] == []
    assert "fx_rate_missing" not in doc["alert_reasons"]


def test_a_missing_rate_is_never_zero():
    """Hand-picked: BRL reporting, EUR converted at 6.25, JPY without a rate."""
    figures = {
        "BRL": CurrencyFigures("BRL", 3, 30_000, {DivergenceKind.AMOUNT_MISMATCH: KindTotal(1, 100)}),
        "EUR": CurrencyFigures("EUR", 2, 1_000, {DivergenceKind.DUPLICATE_IN_GATEWAY: KindTotal(1, 333)}),
        "JPY": CurrencyFigures("JPY", 1, 5_000, {DivergenceKind.MISSING_IN_STATEMENT: KindTotal(1, 7)}),
    }
    rates = {"EUR": FxRate("EUR", Decimal("6.25"), RATE_FROM, "BCB PTAX")}
    summary = DivergenceSummary(
        psp="stripe", window=WINDOW, by_currency=figures, lag_cycles=0, fx_rates=rates
    )
    assert summary.gateway_count == 6 and summary.divergent_count == 3
    assert summary.gateway_amount_minor == 30_000 + 6_250  # JPY left out
    assert summary.divergent_amount_minor == 100 + 2081  # 333 * 6.25 = 2081.25 -> 2081
    assert summary.unconverted_currencies == ["JPY"]
    assert [r.value for r in summary.alert_reasons] == ["fx_rate_missing"]
    assert summary.recovered is False
    # the JPY key is gone: nothing left to convert, the window can recover
    figures["JPY"] = CurrencyFigures("JPY", 1, 5_000, {})
    calm = DivergenceSummary(psp="stripe", window=WINDOW, by_currency=figures, lag_cycles=0, fx_rates=rates)
    assert calm.unconverted_currencies == ["JPY"] and calm.alert_reasons == [] and calm.recovered
