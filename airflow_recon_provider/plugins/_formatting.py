"""How the dashboard's pages write figures, moments and amounts (in the language in force),
and where their templates are: shared by the dashboard, the incident pages and the finance
report's form and section."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from airflow_recon_provider.reconciliation.i18n import (
    _,
    current_language,
    format_number,
    ngettext,
)
from airflow_recon_provider.reconciliation.money import format_money, format_pct, format_rate

if TYPE_CHECKING:
    from airflow_recon_provider.reconciliation.figures import Figures

_MOMENT_FORMATS = {"pt_BR": "%d/%m/%Y %H:%M UTC", "en": "%Y-%m-%d %H:%M UTC"}


def when(moment: datetime | None) -> str:
    """``05/12/2026 14:30 UTC`` (pt-BR), ``2026-12-05 14:30 UTC`` (en)."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime(_MOMENT_FORMATS.get(current_language(), "%Y-%m-%d %H:%M UTC"))


def count(value: int | None) -> str:
    return "-" if value is None else format_number(int(value))


def size(value: int | None) -> str:
    if value is None:
        return _("size not recorded")
    return ngettext("%(num)s byte", "%(num)s bytes", int(value))


def money(amount_minor: int | None, currency: str | None) -> str:
    """An amount in its own currency; one recorded without its currency says so (no guess at
    its decimals)."""
    if amount_minor is None:
        return "-"
    if not currency:
        return _("%(amount)s in minor units (currency not recorded)", amount=count(amount_minor))
    return format_money(amount_minor, currency)


def pct(value: float | None) -> str:
    return _("n/a") if value is None else format_pct(value)


def transactions(n: int) -> str:
    return ngettext("%(num)s transaction", "%(num)s transactions", n)


def rates(figures: Figures) -> str:
    """``1 EUR = 6,2875 BRL (desde 04/12/2026 16:00 UTC, BCB PTAX)``; ``; `` between rates."""
    return "; ".join(
        _(
            "1 %(code)s = %(rate)s %(currency)s (since %(since)s, %(source)s)",
            code=code,
            rate=format_rate(r.rate),
            currency=figures.reporting_currency or "?",
            since=when(r.valid_from),
            source=r.source or _("source not recorded"),
        )
        for code, r in sorted(figures.fx_rates.items())
    )


def _resource(name: str) -> str:
    from importlib.resources import files

    return files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


def input_time(moment: datetime) -> str:
    """A ``datetime-local`` input's value, in UTC (the form says so)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
