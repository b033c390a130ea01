"""The figures of an incident at one moment — divergent amount and count per currency, the
converted total with the rates it used, lag — and how an amount reads (``money_text``).

Amounts are ``int`` minor units of their own currency (DESIGN 3a): what people read carries
its currency and that currency's decimals; a converted total says so and gives its rates,
and amounts of different currencies are never added. Pure domain, no Airflow, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.reconciliation.i18n import _, format_number, ngettext
from airflow_recon_provider.reconciliation.money import (
    DEFAULT_REPORTING_CURRENCY,
    FxRate,
    exponent,
    format_money,
    format_pct,
    rate_text,
)
from airflow_recon_provider.reconciliation.report import divergence_pct

if TYPE_CHECKING:
    from airflow_recon_provider.reconciliation.report import DivergenceSummary

from airflow_recon_provider.reconciliation.errors import IncidentInputError


def _int(value: Any, *, what: str) -> int:
    # a float never touches an amount; bool is an int subclass and never an amount either
    if isinstance(value, bool) or not isinstance(value, int):
        raise IncidentInputError(f"{what} must be an integer, got {value!r}")
    return value


def _opt_int(value: Any, *, what: str) -> int | None:
    return None if value is None else _int(value, what=what)


def money_text(amount_minor: int | None, currency: str | None, *, locale: str | None = None) -> str:
    """An amount as people read it, with its currency and that currency's decimals
    (``R$ 104.175,21``, ``EUR 9.619,80``, ``JPY 1.234``). Figures recorded before amounts
    carried their currency say so instead of guessing one."""
    if amount_minor is None:
        return "-"
    if not currency:
        return _(
            "%(amount)s in the smallest unit of a currency that was not recorded",
            amount=format_number(int(amount_minor)),
        )
    return format_money(amount_minor, currency, locale=locale)


def _signed(amount_minor: int, currency: str | None) -> str:
    return ("+" if amount_minor > 0 else "") + money_text(amount_minor, currency)


@dataclass(frozen=True)
class CurrencyFigure:
    """One currency's figures at one moment, in that currency's own minor units (DESIGN 3a):
    never added to another currency's."""

    currency: str
    divergent_count: int = 0
    divergent_amount_minor: int = 0
    gateway_count: int | None = None
    gateway_amount_minor: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.currency, str):
            raise IncidentInputError(f"a currency code must be text, got {self.currency!r}")
        _int(self.divergent_count, what=f"divergent count of {self.currency}")
        _int(self.divergent_amount_minor, what=f"divergent amount of {self.currency}")
        _opt_int(self.gateway_count, what=f"gateway count of {self.currency}")
        _opt_int(self.gateway_amount_minor, what=f"gateway amount of {self.currency}")

    @property
    def has_divergence(self) -> bool:
        return bool(self.divergent_count or self.divergent_amount_minor)

    def money(self, amount_minor: int | None) -> str:
        return money_text(amount_minor, self.currency)

    @classmethod
    def from_dict(cls, currency: str, data: Mapping[str, Any]) -> CurrencyFigure:
        return cls(
            currency=currency,
            divergent_count=data.get("divergent_count", 0),
            divergent_amount_minor=data.get("divergent_amount_minor", 0),
            gateway_count=data.get("gateway_count"),
            gateway_amount_minor=data.get("gateway_amount_minor"),
        )

    def as_dict(self) -> dict[str, Any]:
        """The shape of a summary's ``by_currency`` entry (DESIGN 3a), without ``by_kind``."""
        return {
            "exponent": exponent(self.currency),
            "gateway_count": self.gateway_count,
            "gateway_amount_minor": self.gateway_amount_minor,
            "divergent_count": self.divergent_count,
            "divergent_amount_minor": self.divergent_amount_minor,
        }


def _rates_from_dict(data: Mapping[str, Any] | None) -> dict[str, FxRate]:
    rates = {}
    for code, r in (data or {}).items():
        try:
            rates[code] = FxRate.from_dict(code, r)
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise IncidentInputError(f"FX rate of {code} is malformed ({exc}): {r!r}") from None
    return rates


@dataclass(frozen=True)
class Figures:
    """Divergence figures at one moment (DESIGN 3a).

    ``divergent_amount_minor`` and ``gateway_amount_minor`` (``None`` when not known) are in
    ``reporting_currency``: each currency's total converted once with the rates in
    ``fx_rates`` (the rates of the decision: recorded on the timeline with it); currencies
    without a rate are left out of them and named in ``unconverted_currencies``. The count
    covers every currency. ``by_currency`` holds each currency's own figures, in its own
    minor units. ``reporting_currency`` is ``None`` for figures recorded before amounts
    carried their currency (then nothing is assumed about them). ``divergence_pct`` is
    derived from the converted integers when the gateway amount is known.
    """

    divergent_amount_minor: int
    divergent_count: int
    gateway_amount_minor: int | None = None
    divergence_pct: float | None = None
    reporting_currency: str | None = DEFAULT_REPORTING_CURRENCY
    by_currency: Mapping[str, CurrencyFigure] = field(default_factory=dict)
    fx_rates: Mapping[str, FxRate] = field(default_factory=dict)
    unconverted_currencies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _int(self.divergent_amount_minor, what="divergent amount")
        _int(self.divergent_count, what="divergent count")
        if self.gateway_amount_minor is not None:
            _int(self.gateway_amount_minor, what="gateway amount")
            if self.divergence_pct is None:
                object.__setattr__(
                    self,
                    "divergence_pct",
                    divergence_pct(self.divergent_amount_minor, self.gateway_amount_minor),
                )
        if isinstance(self.divergence_pct, Decimal):
            object.__setattr__(self, "divergence_pct", float(self.divergence_pct))
        if self.reporting_currency is not None and not isinstance(self.reporting_currency, str):
            raise IncidentInputError(f"reporting currency must be a code, got {self.reporting_currency!r}")
        for code, fig in self.by_currency.items():
            if not isinstance(fig, CurrencyFigure) or fig.currency != code:
                raise IncidentInputError(f"figures of {code} must be a CurrencyFigure of {code}, got {fig!r}")
        for code, rate in self.fx_rates.items():
            if not isinstance(rate, FxRate) or rate.currency != code:
                raise IncidentInputError(f"FX rate of {code} must be an FxRate of {code}, got {rate!r}")
        object.__setattr__(self, "by_currency", dict(self.by_currency))
        object.__setattr__(self, "fx_rates", dict(self.fx_rates))
        object.__setattr__(self, "unconverted_currencies", tuple(sorted(self.unconverted_currencies)))

    # -- building and reading back ------------------------------------------------------------
    @classmethod
    def from_summary(cls, summary: DivergenceSummary) -> Figures:
        """The summary's converted figures, each currency's own figures and the rates used."""
        return cls(
            divergent_amount_minor=summary.divergent_amount_minor,
            divergent_count=summary.divergent_count,
            gateway_amount_minor=summary.gateway_amount_minor,
            reporting_currency=summary.reporting_currency,
            by_currency={
                code: CurrencyFigure(
                    code,
                    divergent_count=fig.divergent_count,
                    divergent_amount_minor=fig.divergent_amount_minor,
                    gateway_count=fig.gateway_count,
                    gateway_amount_minor=fig.gateway_amount_minor,
                )
                for code, fig in summary.by_currency.items()
            },
            fx_rates=dict(summary.used_rates),
            unconverted_currencies=tuple(summary.unconverted_currencies),
        )

    @classmethod
    def coerce(cls, value: Figures | DivergenceSummary | Mapping[str, Any] | None) -> Figures | None:
        if value is None or isinstance(value, Figures):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        if hasattr(value, "divergent_amount_minor") and hasattr(value, "by_currency"):
            return cls.from_summary(value)  # type: ignore[arg-type]
        raise IncidentInputError(f"figures must be Figures or a divergence summary, got {value!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Figures:
        """From :meth:`as_dict`, a summary's ``as_dict``, an alert or a recovery event. Without
        a reporting currency (recorded before amounts carried one) it stays unknown."""
        pct = data.get("divergence_pct")
        try:
            by_currency = {
                code: CurrencyFigure.from_dict(code, fig)
                for code, fig in (data.get("by_currency") or {}).items()
            }
            return cls(
                divergent_amount_minor=data["divergent_amount_minor"],
                divergent_count=data["divergent_count"],
                gateway_amount_minor=data.get("gateway_amount_minor"),
                divergence_pct=None if pct is None else float(pct),
                reporting_currency=data.get("reporting_currency", data.get("currency")),
                by_currency=by_currency,
                fx_rates=_rates_from_dict(data.get("fx_rates")),
                unconverted_currencies=tuple(data.get("unconverted_currencies") or ()),
            )
        except KeyError as exc:
            raise IncidentInputError(f"figures lack {exc}: {dict(data)!r}") from None

    def as_dict(self) -> dict[str, Any]:
        """JSON (``recon.notifications.figures``, XCom); the keys of a summary's ``as_dict``."""
        return {
            "divergent_amount_minor": self.divergent_amount_minor,
            "divergent_count": self.divergent_count,
            "gateway_amount_minor": self.gateway_amount_minor,
            "divergence_pct": self.divergence_pct,
            "reporting_currency": self.reporting_currency,
            "by_currency": {c: self.by_currency[c].as_dict() for c in sorted(self.by_currency)},
            "fx_rates": {c: self.fx_rates[c].as_dict() for c in sorted(self.fx_rates)},
            "unconverted_currencies": list(self.unconverted_currencies),
        }

    def currency_figures(self) -> dict[str, Any]:
        """What ``currency_figures`` (jsonb) of ``recon.incidents`` / ``recon.incident_events``
        keeps next to the converted amount, count and % columns."""
        return {
            "currency": self.reporting_currency,
            "gateway_amount_minor": self.gateway_amount_minor,
            "by_currency": {c: self.by_currency[c].as_dict() for c in sorted(self.by_currency)},
            "fx_rates": {c: self.fx_rates[c].as_dict() for c in sorted(self.fx_rates)},
            "unconverted_currencies": list(self.unconverted_currencies),
        }

    @classmethod
    def from_columns(
        cls, amount: Any, count: Any, pct: Any, currency_figures: Mapping[str, Any] | None
    ) -> Figures | None:
        """Figures back from the columns of an incident or timeline event (``None`` when none
        were recorded); without ``currency_figures`` their currency is not known."""
        if amount is None or count is None:
            return None
        stored = dict(currency_figures or {})
        return cls.from_dict(
            {
                **stored,
                "divergent_amount_minor": int(amount),
                "divergent_count": int(count),
                "divergence_pct": None if pct is None else float(pct),
                "currency": stored.get("currency"),
            }
        )

    # -- for people -------------------------------------------------------------------------------
    @property
    def pct_text(self) -> str:
        return format_pct(self.divergence_pct)

    def money(self, amount_minor: int | None) -> str:
        """A converted amount (reporting currency) as people read it."""
        return money_text(amount_minor, self.reporting_currency)

    @property
    def several_currencies(self) -> bool:
        """More than one currency, or one other than the reporting currency: the totals are
        converted and each currency's own figure is shown too."""
        return bool(self.by_currency) and set(self.by_currency) != {self.reporting_currency}

    @property
    def converted(self) -> bool:
        """Some amount of the totals was converted with a rate."""
        return self.several_currencies and bool(self.fx_rates)

    def _divergent_currencies(self, *, unconverted: bool = True) -> list[CurrencyFigure]:
        return [
            self.by_currency[c]
            for c in sorted(self.by_currency)
            if self.by_currency[c].has_divergence and (unconverted or c not in self.unconverted_currencies)
        ]

    def rates_text(self, *, full: bool = True) -> str:
        """``1 EUR = 6,25 BRL (from 2026-12-04 16:00 UTC, BCB PTAX); 1 JPY = ...`` (not ``full``:
        ``1 EUR = 6,25 BRL and 1 JPY = 0,0375 BRL``)."""
        return ("; " if full else _(" and ")).join(
            rate_text(self.fx_rates[c], self.reporting_currency, full=full) for c in sorted(self.fx_rates)
        )

    def unconverted_text(self) -> str:
        """``no FX rate: USD 12,00 not included``: what the converted totals leave out."""
        parts = []
        for code in self.unconverted_currencies:
            fig = self.by_currency.get(code)
            if fig is None:
                parts.append(code)
            elif fig.has_divergence or not fig.gateway_amount_minor:
                parts.append(fig.money(fig.divergent_amount_minor))
            else:
                parts.append(
                    _(
                        "%(amount)s (of %(processed)s processed)",
                        amount=fig.money(0),
                        processed=fig.money(fig.gateway_amount_minor),
                    )
                )
        if not parts:
            return ""
        return _("no FX rate: %(amounts)s not included", amounts=_(" and ").join(parts))

    def headline(self) -> str:
        """The totals: ``1,2345% — R$ 12.345,67 divergent (converted to BRL) in 15
        transaction(s) of R$ 1.000.000,00 processed by the gateway (converted to BRL)``."""
        conv = (
            " " + _("(converted to %(currency)s)", currency=self.reporting_currency) if self.converted else ""
        )
        text = ngettext(
            "%(pct)s — %(amount)s divergent%(conv)s in %(num)s transaction",
            "%(pct)s — %(amount)s divergent%(conv)s in %(num)s transactions",
            self.divergent_count,
            pct=self.pct_text,
            amount=self.money(self.divergent_amount_minor),
            conv=conv,
        )
        if self.gateway_amount_minor is not None:
            text += " " + _(
                "of %(amount)s processed by the gateway%(conv)s",
                amount=self.money(self.gateway_amount_minor),
                conv=conv,
            )
        return text

    def currency_lines(self) -> list[str]:
        """One line per currency, in that currency: ``EUR 9.619,80 divergent in 1
        transaction(s) of EUR 20.000,00 processed``."""
        lines = []
        for code in sorted(self.by_currency):
            fig = self.by_currency[code]
            line = ngettext(
                "%(amount)s divergent in %(num)s transaction",
                "%(amount)s divergent in %(num)s transactions",
                fig.divergent_count,
                amount=fig.money(fig.divergent_amount_minor),
            )
            if fig.gateway_amount_minor is not None:
                line += " " + _("of %(amount)s processed", amount=fig.money(fig.gateway_amount_minor))
            lines.append(line)
        return lines

    def rate_lines(self) -> list[str]:
        """``1 EUR = 6,25 BRL (from 2026-12-04 16:00 UTC, BCB PTAX)``, one per rate used."""
        return [rate_text(self.fx_rates[c], self.reporting_currency) for c in sorted(self.fx_rates)]

    def fields(self, label: str, note: str = "") -> list[tuple[str, str]]:
        """The figures as labelled lines for a message: the totals (``label``), then with
        several currencies each currency's own line, the rates used and what has no rate."""
        pairs = [(label, self.headline() + (f" ({note})" if note else ""))]
        if self.several_currencies:
            pairs.append((_("Per currency"), "\n".join(self.currency_lines())))
            if self.fx_rates:
                pairs.append(
                    (
                        _("FX rates (to %(currency)s)", currency=self.reporting_currency),
                        "\n".join(self.rate_lines()),
                    )
                )
        if self.unconverted_currencies:
            pairs.append((_("Not converted"), self.unconverted_text()))
        return pairs

    def describe(self) -> str:
        """``1,2345% — R$ 12.345,67 divergent in 15 transaction(s) of R$ 1.000.000,00 processed
        by the gateway``; with several currencies, the totals say they are converted and at
        which rates, each currency's own figure follows, and currencies without a rate are
        named."""
        text = self.headline()
        if self.several_currencies:
            per = [
                ngettext(
                    "%(amount)s in %(num)s transaction",
                    "%(amount)s in %(num)s transactions",
                    fig.divergent_count,
                    amount=fig.money(fig.divergent_amount_minor),
                )
                for fig in self._divergent_currencies()
            ]
            if per:
                text += "; " + _("per currency: %(figures)s", figures="; ".join(per))
            if self.fx_rates:
                text += "; " + _("rates: %(rates)s", rates=self.rates_text())
        if self.unconverted_currencies:
            text += f"; {self.unconverted_text()}"
        return text

    def short(self) -> str:
        """``1,2345% (R$ 12.345,67)``; with several currencies each currency's own figure, the
        converted total labelled with its rates, and what has no rate."""
        if not self.several_currencies:
            return f"{self.pct_text} ({self.money(self.divergent_amount_minor)})"
        parts = [
            fig.money(fig.divergent_amount_minor) for fig in self._divergent_currencies(unconverted=False)
        ]
        total = self.money(self.divergent_amount_minor)
        if self.converted:
            total += " " + _("converted at %(rates)s", rates=self.rates_text(full=False))
        text = "; ".join(parts) + " — " + total if parts else total
        if self.unconverted_currencies:
            text += f"; {self.unconverted_text()}"
        return f"{self.pct_text} ({text})"


__all__ = ["CurrencyFigure", "Figures", "money_text"]
