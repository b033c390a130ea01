"""FX rates for tests whose data mix currencies but whose arithmetic is about something else.

DESIGN 3a: a currency without a rate in ``recon.fx_rates`` is never taken as small — it is
left out of the converted figures and fires ``fx_rate_missing``. Seeded data with USD and EUR
beside BRL (all with 2 decimals) therefore needs rates; at 1 BRL per unit the converted
figures equal the per-currency ones added, so a scenario's arithmetic stays readable.
"""

from __future__ import annotations

from typing import Any

PARITY_FROM = "2000-01-01T00:00Z"


def insert_parity_rates(db: Any, *currencies: str, valid_from: str = PARITY_FROM) -> None:
    """One rate of 1 (BRL per unit) for each of ``currencies`` (default USD and EUR), in force
    from ``valid_from``, source ``test: parity``."""
    for currency in currencies or ("USD", "EUR"):
        db.execute(
            "INSERT INTO recon.fx_rates (currency, rate, valid_from, source)"
            " VALUES (%s, 1, %s, 'test: parity')",
            (currency, valid_from),
        )
