"""Ledger integrity (runbook Investigação 3): the ledger's and the gateway's counts and
amounts side by side, per status and currency (DESIGN 3a: amounts are never added across
currencies). The lines come from :func:`~airflow_recon_provider.reconciliation.recovery.alignment_lines`,
the recovery criterion's side by side, so both read statuses and currencies the same way."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_recon_provider.reconciliation.recovery import NO_CURRENCY, alignment_lines
from airflow_recon_provider.reconciliation.window import Window


@dataclass(frozen=True)
class StatusLine:
    """One status (the gateway's vocabulary) and currency: the gateway's and the ledger's
    count and amount, in ``currency``'s minor units (``""``: rows without a currency)."""

    status: str
    currency: str
    gateway_count: int
    gateway_amount_minor: int
    ledger_count: int
    ledger_amount_minor: int

    @property
    def matches(self) -> bool:
        return (self.gateway_count, self.gateway_amount_minor) == (
            self.ledger_count,
            self.ledger_amount_minor,
        )


@dataclass(frozen=True)
class LedgerComparison:
    psp: str
    window: Window
    lines: tuple[StatusLine, ...]

    @property
    def matches(self) -> bool:
        return all(line.matches for line in self.lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "psp": self.psp,
            **self.window.as_dict(),
            "matches": self.matches,
            "statuses": [
                {
                    "status": line.status,
                    "currency": line.currency,
                    "gateway_count": line.gateway_count,
                    "gateway_amount_minor": line.gateway_amount_minor,
                    "ledger_count": line.ledger_count,
                    "ledger_amount_minor": line.ledger_amount_minor,
                    "matches": line.matches,
                }
                for line in self.lines
            ],
        }


def compare_status_counts(
    psp: str,
    window: Window,
    *,
    gateway: Iterable[tuple[str, str | None, int, int]],
    ledger: Iterable[tuple[str, str | None, int, int]],
    status_mapping: Mapping[str, str] | None = None,
    ledger_status_mapping: Mapping[str, str] | None = None,
) -> LedgerComparison:
    """The ledger beside the gateway per status and currency.

    :param gateway: ``queries.gateway_status_counts_query`` rows: ``(status, currency, count,
        amount_minor)``.
    :param ledger: ``queries.ledger_totals_query`` rows, the same shape, the ledger's statuses.
    :param status_mapping: the PSP's statement -> gateway status mapping.
    :param ledger_status_mapping: the PSP's ledger -> statement status mapping.
    """
    lines = alignment_lines(
        (("gateway", status, currency, count, amount) for status, currency, count, amount in gateway),
        ledger,
        status_mapping=status_mapping,
        ledger_status_mapping=ledger_status_mapping,
    )
    return LedgerComparison(
        psp=psp,
        window=window,
        lines=tuple(
            StatusLine(
                status=line.status,
                currency=line.currency or NO_CURRENCY,
                gateway_count=line.gateway_count,
                gateway_amount_minor=line.gateway_amount_minor,
                ledger_count=line.ledger_count,
                ledger_amount_minor=line.ledger_amount_minor,
            )
            for line in lines
        ),
    )
