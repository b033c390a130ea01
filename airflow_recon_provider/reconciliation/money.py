"""Money in its own currency (DESIGN section 3a).

Every amount is integer minor units of its own currency (ISO 4217 exponent: BRL 2, JPY 0,
BHD 3). Amounts of different currencies are never added: a figure in the reporting
currency (BRL by default; the runbook's thresholds are in reais) is the sum of per-currency
totals each converted once, exactly, with the rate of ``recon.fx_rates`` in force at the
window's end. What people read carries its currency and that currency's decimals, in
Brazilian format by default (Babel, not hand-written formatting).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from functools import lru_cache
from typing import Any

from airflow_recon_provider.reconciliation.errors import ReconError
from airflow_recon_provider.reconciliation.i18n import (
    LanguageError,
    _,
    current_language,
    normalize_language,
    use_language,
)

#: the runbook's thresholds are in reais
DEFAULT_REPORTING_CURRENCY = "BRL"
#: what people read: Brazilian Portuguese unless configured otherwise
DEFAULT_LOCALE = "pt_BR"

#: exact: a product of an amount (<= 19 digits) and a rate never needs more digits
_EXACT = Context(prec=120)


class CurrencyError(ReconError):
    """A currency code is not an ISO 4217 currency with minor units."""


class FxRateError(ReconError):
    """An FX rate is invalid (zero or negative, not a number, unknown currency, bad date)."""


@lru_cache(maxsize=512)
def _exponent(code: str) -> int | None:
    from iso4217 import Currency

    try:
        return Currency(code).exponent
    except ValueError:
        return None


def check_currency(code: Any) -> str:
    """``code`` as an upper-case ISO 4217 code with minor units, or :class:`CurrencyError`."""
    if not isinstance(code, str) or not code.strip():
        raise CurrencyError(f"currency {code!r} is not an ISO 4217 code (three letters, e.g. BRL)")
    upper = code.strip().upper()
    if len(upper) != 3 or not upper.isascii() or not upper.isalpha() or _exponent(upper) is None:
        raise CurrencyError(f"currency {code!r} is not an ISO 4217 currency code with minor units (e.g. BRL)")
    return upper


def exponent(code: str | None) -> int | None:
    """ISO 4217 exponent (decimals of the minor unit) of ``code``; ``None`` when unknown."""
    if not code:
        return None
    return _exponent(code.upper())


def minor_to_decimal(amount_minor: int, currency: str | None) -> Decimal:
    """``10417521`` BRL -> ``Decimal('104175.21')``; exact. Unknown currencies keep minor units."""
    exp = exponent(currency)
    return Decimal(int(amount_minor)).scaleb(-(exp or 0))


@dataclass(frozen=True)
class FxRate:
    """One row of ``recon.fx_rates``: units of the reporting currency per one unit of
    ``currency``, in force from ``valid_from``."""

    currency: str
    rate: Decimal
    valid_from: datetime
    source: str

    def __post_init__(self) -> None:
        if not isinstance(self.rate, Decimal) or not self.rate.is_finite() or self.rate <= 0:
            raise FxRateError(f"FX rate of {self.currency} must be a positive decimal, got {self.rate!r}")

    @classmethod
    def from_db(cls, record: tuple[Any, ...]) -> FxRate:
        currency, rate, valid_from, source = record
        return cls(currency=currency, rate=Decimal(rate), valid_from=valid_from, source=source or "")

    @classmethod
    def from_dict(cls, currency: str, data: Mapping[str, Any]) -> FxRate:
        """Back from :meth:`as_dict` (``KeyError``, ``ValueError`` ... when malformed)."""
        return cls(
            currency,
            Decimal(str(data["rate"])),
            datetime.fromisoformat(data["valid_from"]),
            data.get("source") or "",
        )

    def as_dict(self) -> dict[str, str]:
        """JSON shape of DESIGN 3a: the rate as a decimal string, ``valid_from`` ISO 8601."""
        return {
            "rate": format(self.rate.normalize(), "f"),
            "valid_from": self.valid_from.isoformat(),
            "source": self.source,
        }


def convert_minor(amount_minor: int, currency: str, rate: Decimal, reporting_currency: str) -> int:
    """``round_half_even(T * rate * 10^(e_r - e_c))``: minor units of ``currency`` to minor
    units of the reporting currency, exact decimal arithmetic, rounded once."""
    e_c, e_r = exponent(currency), exponent(reporting_currency)
    if e_c is None or e_r is None:
        raise CurrencyError(
            f"cannot convert {currency!r} to {reporting_currency!r}: unknown ISO 4217 exponent"
        )
    with localcontext(_EXACT):
        value = Decimal(int(amount_minor)) * rate * Decimal(10) ** (e_r - e_c)
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True)
class Converter:
    """Converts per-currency totals to the reporting currency with the rates of one window.

    :param reporting_currency: the currency thresholds and converted figures are in.
    :param rates: the rate in force at the window's end of each currency that has one.
    """

    reporting_currency: str = DEFAULT_REPORTING_CURRENCY
    rates: Mapping[str, FxRate] | None = None

    def can_convert(self, currency: str) -> bool:
        return currency == self.reporting_currency or (
            currency in (self.rates or {}) and exponent(currency) is not None
        )

    def convert(self, amount_minor: int, currency: str) -> int | None:
        """``amount_minor`` of ``currency`` in reporting minor units; ``None`` without a rate."""
        if currency == self.reporting_currency:
            return int(amount_minor)
        if not self.can_convert(currency):
            return None
        return convert_minor(amount_minor, currency, self.rates[currency].rate, self.reporting_currency)

    def total(self, amounts: Iterable[tuple[str, int]]) -> int:
        """Sum of the convertible amounts, each converted separately (the caller passes one
        total per currency, so each currency is rounded once)."""
        return sum(v for c, a in amounts if (v := self.convert(a, c)) is not None)


# -- for people -------------------------------------------------------------------------


def _words(locale: str | None) -> AbstractContextManager[Any]:
    """The words around a figure in the language of an explicit ``locale`` (when it is one
    of the catalogs' languages), else in the language in force."""
    try:
        language = normalize_language(locale) if locale else None
    except LanguageError:
        language = None
    return use_language(language) if language else nullcontext()


def babel_locale(language: str | None) -> str:
    """A Babel locale for a language (``pt-BR``/``pt_BR``/``en``); ``None``: the language
    people read in now (:func:`i18n.current_language`: ``[recon] language``, pt-BR by
    default)."""
    if not language:
        return current_language()
    return language.replace("-", "_")


def format_money(
    amount_minor: int | None,
    currency: str | None,
    *,
    locale: str | None = None,
) -> str:
    """An amount as people read it: ``R$ 104.175,21`` (the locale's own currency with its
    symbol), ``EUR 9.619,80`` (other currencies by ISO code, no ambiguous ``$``), with the
    currency's own ISO 4217 decimals (``JPY 1.234``, ``BHD 1,234``)."""
    if amount_minor is None:
        return "-"
    from babel.numbers import format_currency, get_territory_currencies

    code = (currency or "").upper()
    exp = exponent(code)
    if exp is None:
        # not a currency we know the decimals of: never guess them (nor show bare minor units)
        with _words(locale):
            return _(
                "%(amount)s in the smallest unit of %(currency)s (decimals unknown)",
                amount=int(amount_minor),
                currency=code or "?",
            )
    loc = babel_locale(locale)
    territory = loc.split("_")[1] if "_" in loc else None
    own = bool(territory) and code in get_territory_currencies(territory)
    digits = "0" * exp
    pattern = ("¤" if own else "¤¤") + " #,##0" + (f".{digits}" if exp else "")
    return format_currency(
        Decimal(int(amount_minor)).scaleb(-exp), code, format=pattern, locale=loc, currency_digits=False
    )


def format_rate(rate: Decimal, *, locale: str | None = None) -> str:
    """A rate with all its significant decimals, in the locale's number format."""
    from babel.numbers import format_decimal

    normal = rate.normalize()
    places = max(0, -normal.as_tuple().exponent)
    return format_decimal(
        normal, format="#,##0." + "0" * places if places else "#,##0", locale=babel_locale(locale)
    )


def rate_text(
    rate: FxRate, reporting_currency: str | None, *, full: bool = True, locale: str | None = None
) -> str:
    """``1 EUR = 6,2875 BRL`` and, ``full``, the moment it is in force from and its source:
    ``1 EUR = 6,2875 BRL (from 2026-11-20 16:00 UTC, BCB PTAX)``. The one wording of a rate
    on every surface (summary, dashboard, approval, incident timeline, e-mail)."""
    text = f"1 {rate.currency} = {format_rate(rate.rate, locale=locale)} {reporting_currency or '?'}"
    if full:
        moment = rate.valid_from.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        with _words(locale):  # an explicit locale is also the language of the words
            source = rate.source or _("source not recorded")
            text += " " + _("(from %(moment)s, %(source)s)", moment=moment, source=source)
    return text


def format_pct(pct: float | Decimal | None, *, locale: str | None = None) -> str:
    """A percentage with 4 decimals in the locale's number format (``11,6164%``)."""
    if pct is None:
        with _words(locale):
            return _("n/a")
    from babel.numbers import format_decimal

    return format_decimal(Decimal(str(pct)), format="#,##0.0000", locale=babel_locale(locale)) + "%"
