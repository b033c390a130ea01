"""Detection (runbook "Detecção" and "Contexto"): which window a watch looks at, and
when the alert ``billing_gateway-reconciliation`` fires for a PSP.

Fire and clear are separate conditions: a PSP with an open incident does not fire again
until that incident is closed, so a persistent divergence starts one remediation, not
one per poll. One exception (:func:`watch_fires_on_open_incident`): an incident opened or
joined by finance's report (Detecção 2) whose only remediation so far is the report's dry
run. Nobody is remediating it, so a breach of the alert rule fires on that same incident and
starts its real remediation; the watch records on the timeline why (step
:data:`WATCH_ALERT_STEP`), which keeps any later poll quiet.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
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


#: the timeline step the watch records when it fires on an incident it did not open
WATCH_ALERT_STEP = "detection.watch_alert"
#: the actor of the watch's steps (the watch DAG)
WATCH_ACTOR = "billing_gateway_divergence_watch"
#: the watch starts each remediation as run ``watch__<incident_id>``
WATCH_RUN_PREFIX = "watch__"
#: lease events of a real run that worked on the incident
REAL_RUN_LEASE_EVENTS = frozenset({"acquired", "reentered", "taken_over"})


@dataclass(frozen=True)
class OpenIncidentActivity:
    """What has been done about a PSP's open incident, as the watch's rule needs it.

    :param incident_id: the open incident.
    :param opened_by: who opened it.
    :param finance_dry_runs: run ids of the dry runs finance's reports on it started.
    :param scope_runs: run ids of every remediation run whose scope step recorded on it
        (dry or real).
    :param real_run_claims: how many times a real run claimed the PSP's remediation lease
        for this incident (``recon.remediation_lease_events``: acquired, reentered, taken over).
    :param lease_holder: the run holding the PSP's remediation lease now, whatever its
        incident (``"<dag_id> run <run_id>"``), else ``None``.
    :param watch_alerts: how many times the watch already fired on it (:data:`WATCH_ALERT_STEP`).
    """

    incident_id: str
    opened_by: str
    finance_dry_runs: frozenset[str] = field(default_factory=frozenset)
    scope_runs: frozenset[str] = field(default_factory=frozenset)
    real_run_claims: int = 0
    lease_holder: str | None = None
    watch_alerts: int = 0

    @classmethod
    def of(
        cls,
        incident_id: str,
        opened_by: str,
        *,
        finance_dry_runs: Collection[str | None] = (),
        scope_runs: Collection[str | None] = (),
        real_run_claims: int = 0,
        lease_holder: str | None = None,
        watch_alerts: int = 0,
    ) -> OpenIncidentActivity:
        return cls(
            incident_id=incident_id,
            opened_by=opened_by,
            finance_dry_runs=frozenset(r for r in finance_dry_runs if r),
            scope_runs=frozenset(r for r in scope_runs if r),
            real_run_claims=int(real_run_claims or 0),
            lease_holder=lease_holder or None,
            watch_alerts=int(watch_alerts or 0),
        )

    @property
    def finance_reported(self) -> bool:
        return bool(self.finance_dry_runs)

    @property
    def other_runs(self) -> frozenset[str]:
        """Remediation runs on the incident that are not a finance report's dry run."""
        return self.scope_runs - self.finance_dry_runs


def watch_fires_on_open_incident(activity: OpenIncidentActivity) -> tuple[bool, str]:
    """Does a breach of the alert rule fire on the PSP's open incident? And why (English,
    for the triggerer's log and the timeline's details).

    It fires only when every one of these holds:

    1. a finance report is on the incident (it started a dry run);
    2. the watch neither opened it nor fired on it already (one real remediation per
       incident from the watch; a re-fire is quiet);
    3. no remediation run recorded on it other than the finance reports' dry runs (an
       on-call run, dry or real, means someone is on it);
    4. no run holds the PSP's remediation lease now (a reprocess, correction, rollback or
       remediation running for the PSP, whatever its incident);
    5. no real run ever claimed the PSP's remediation lease for it.
    """
    a = activity
    if not a.finance_reported:
        return False, (
            f"incident {a.incident_id} is open (opened by {a.opened_by}); its remediation is left to it"
        )
    if a.opened_by == WATCH_ACTOR or a.watch_alerts:
        return False, f"incident {a.incident_id} is open and the watch already started its remediation"
    if a.other_runs:
        runs = ", ".join(sorted(a.other_runs))
        return False, f"incident {a.incident_id} is open and remediation run(s) {runs} worked on it"
    if a.lease_holder:
        return False, (
            f"incident {a.incident_id} is open and {a.lease_holder} holds the PSP's remediation lease"
        )
    if a.real_run_claims:
        return False, f"incident {a.incident_id} is open and a real remediation run already worked on it"
    runs = ", ".join(sorted(a.finance_dry_runs))
    return True, (
        f"incident {a.incident_id} was opened or joined by a finance report and has had no remediation "
        f"but the report's dry run ({runs}): the watch starts its real remediation"
    )


@dataclass(frozen=True)
class Detection:
    """The outcome of one check of one PSP.

    :param activity: what was done about the open incident (``None`` when none is open, or
        when only its id was read).
    """

    summary: DivergenceSummary
    open_incident_id: str | None
    checked_at: datetime
    activity: OpenIncidentActivity | None = None

    @property
    def breached(self) -> bool:
        return self.summary.alert

    @property
    def attaches(self) -> tuple[bool, str]:
        """Whether a breach fires on the open incident, and why (no open incident: no)."""
        if self.open_incident_id is None:
            return False, "no open incident"
        if self.activity is None:
            return False, f"incident {self.open_incident_id} is open"
        return watch_fires_on_open_incident(self.activity)

    @property
    def should_fire(self) -> bool:
        return self.breached and (self.open_incident_id is None or self.attaches[0])

    def event_payload(self) -> dict[str, Any]:
        """Plain JSON for a TriggerEvent / XCom / the remediation DAG's conf. When the alert
        fires on an open incident (finance's report, no remediation), ``incident_id`` names it
        and ``fired_on_open_incident`` says why."""
        s = self.summary
        figures = s.as_dict()
        attach = {}
        if self.open_incident_id is not None and self.attaches[0]:
            attach = {"incident_id": self.open_incident_id, "fired_on_open_incident": self.attaches[1]}
        return {
            **attach,
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


__all__ = [
    "REAL_RUN_LEASE_EVENTS",
    "WATCH_ACTOR",
    "WATCH_ALERT_STEP",
    "WATCH_RUN_PREFIX",
    "Detection",
    "OpenIncidentActivity",
    "watch_fires_on_open_incident",
    "watch_window",
]
