"""Detection (runbook "Detecção" and "Contexto"): which window a watch looks at, and
when the alert ``billing_gateway-reconciliation`` fires for a PSP.

Fire and clear are separate conditions: a PSP with an open incident never fires again
until that incident is closed, so a persistent divergence starts one remediation, not
one per poll.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_recon_provider.reconciliation.report import DivergenceSummary
from airflow_recon_provider.reconciliation.window import CYCLE, Window, floor_cycle


def watch_window(now: datetime, lookback_cycles: int) -> Window:
    """The last ``lookback_cycles`` completed hourly cycles before ``now``."""
    if lookback_cycles < 1:
        raise ValueError(f"lookback_cycles must be at least 1, got {lookback_cycles}")
    end = floor_cycle(now)
    return Window(end - lookback_cycles * CYCLE, end)


@dataclass(frozen=True)
class Detection:
    """The outcome of one check of one PSP."""

    summary: DivergenceSummary
    open_incident_id: str | None
    checked_at: datetime

    @property
    def breached(self) -> bool:
        return self.summary.alert

    @property
    def should_fire(self) -> bool:
        return self.breached and self.open_incident_id is None

    def event_payload(self) -> dict[str, Any]:
        """Plain JSON for a TriggerEvent / XCom / the remediation DAG's conf."""
        s = self.summary
        figures = s.as_dict()
        return {
            "status": "alert",
            "psp": s.psp,
            "window_start": s.window.start.isoformat(),
            "window_end": s.window.end.isoformat(),
            "reason": ",".join(r.value for r in s.alert_reasons),
            "reasons": [r.value for r in s.alert_reasons],
            "divergent_amount_minor": s.divergent_amount_minor,
            "divergent_count": s.divergent_count,
            "divergence_pct": s.divergence_pct,
            "gateway_amount_minor": s.gateway_amount_minor,
            "lag_cycles": s.lag_cycles,
            "by_kind": figures["by_kind"],
            # the converted figures above are in this currency; each currency's own figures
            # and the rates used go with them (DESIGN 3a)
            "reporting_currency": s.reporting_currency,
            "by_currency": figures["by_currency"],
            "fx_rates": figures["fx_rates"],
            "unconverted_currencies": figures["unconverted_currencies"],
            "checked_at": self.checked_at.isoformat(),
        }


__all__ = ["Detection", "watch_window"]
