"""The demo's FX rates: made-up, plausible rates in reais (**not** real quotations).

- :func:`seed_demo_fx_rates` puts one rate per demo currency into ``recon.fx_rates``, in force
  from before the scenario's window, so the demo's summaries can convert every currency the
  seed uses (USD, EUR; JPY for a currency without decimals);
- :func:`demo_ptax_quotes` is what the PTAX stand-in (:class:`~.stand_ins.DemoPtaxApi`)
  serves for recent business days, so ``billing_gateway_fx_rates`` runs in the demo.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

#: reais per unit; made up for the demo
DEMO_FX_RATES: dict[str, Decimal] = {
    "USD": Decimal("5.4312"),
    "EUR": Decimal("6.2875"),
    "GBP": Decimal("7.1934"),
    "JPY": Decimal("0.036104"),
    "CHF": Decimal("6.7120"),
    "CAD": Decimal("3.9285"),
    "AUD": Decimal("3.5862"),
}
DEMO_FX_SOURCE = "demo (made-up rates, not a real quotation)"


def demo_rates_valid_from(window_start: datetime) -> datetime:
    """00:00 UTC of the day before the scenario's window starts: before every amount of it."""
    day = (window_start.astimezone(UTC) - timedelta(days=1)).date()
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def seed_demo_fx_rates(
    conn: Any, *, valid_from: datetime, rates: Mapping[str, Decimal] | None = None
) -> dict[str, Decimal]:
    """Store the demo rates valid from ``valid_from`` (a psycopg connection to the gateway
    database, schema migrated); a rate already stored for that time is kept, so seeding
    again is harmless. Returns the rates seeded."""
    from airflow_recon_provider.reconciliation import fx_queries
    from airflow_recon_provider.reconciliation.money import FxRate

    chosen = dict(rates if rates is not None else DEMO_FX_RATES)
    for currency, rate in chosen.items():
        checked = FxRate(currency, rate, valid_from, DEMO_FX_SOURCE)  # refuses a bad demo rate
        conn.execute(
            fx_queries.insert_if_absent_query(),
            {
                "currency": checked.currency,
                "rate": checked.rate,
                "valid_from": checked.valid_from,
                "source": checked.source,
            },
        )
    return chosen


def business_days(end: date, count: int) -> list[date]:
    """The ``count`` Monday-to-Friday days up to ``end`` (inclusive), oldest first."""
    days: list[date] = []
    day = end
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day -= timedelta(days=1)
    return sorted(days)


def demo_ptax_quotes(
    days: Iterable[date] | None = None, rates: Mapping[str, Decimal] | None = None
) -> dict[tuple[str, date], Decimal]:
    """``{(currency, day): rate}`` for the PTAX stand-in: the demo rates on the last 30
    business days (weekends have no bulletin, as in PTAX)."""
    chosen = rates if rates is not None else DEMO_FX_RATES
    when = list(days) if days is not None else business_days(datetime.now(UTC).date(), 30)
    return {(currency, day): rate for day in when for currency, rate in chosen.items()}
