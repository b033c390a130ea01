"""Ledger integrity (runbook Investigação 3): gateway and ledger status counts side by side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_recon_provider.reconciliation.window import Window


@dataclass(frozen=True)
class StatusLine:
    status: str
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
    gateway: dict[str, tuple[int, int]],
    ledger: dict[str, tuple[int, int]],
) -> LedgerComparison:
    lines = tuple(
        StatusLine(
            status=status,
            gateway_count=gateway.get(status, (0, 0))[0],
            gateway_amount_minor=gateway.get(status, (0, 0))[1],
            ledger_count=ledger.get(status, (0, 0))[0],
            ledger_amount_minor=ledger.get(status, (0, 0))[1],
        )
        for status in sorted(set(gateway) | set(ledger))
    )
    return LedgerComparison(psp=psp, window=window, lines=lines)
