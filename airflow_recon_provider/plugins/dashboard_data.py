"""What the "Reconciliação Financeira" dashboard shows, read through the provider's hooks.

Runbook, Detecção: "dashboard de reconciliação" — per PSP, the divergence over the last
cycles (the window the divergence watch checks), the reconciliation lag, whether automatic
reconciliation is paused, the open incident with its timeline, and the latest corrections
with who approved them. Everything is read from the gateway database through the
connection Airflow already has (``billing_gateway_db``); nothing here writes.

A problem that concerns the whole page (connection missing, database unreachable, invalid
configuration) becomes a :class:`DashboardUnavailable` with a sentence a finance analyst can
act on; a problem of one PSP or one section stays in that PSP's row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID, REMEDIATION_DAG_ID
from airflow_recon_provider.reconciliation.config import ReconConfig
from airflow_recon_provider.reconciliation.detection import watch_window
from airflow_recon_provider.reconciliation.errors import (
    ConfigError,
    ConnectionMissingError,
    DatabaseUnavailableError,
    ReconError,
)
from airflow_recon_provider.reconciliation.window import CYCLE, Window, floor_cycle

if TYPE_CHECKING:
    from airflow_recon_provider.reconciliation.controls import Control
    from airflow_recon_provider.reconciliation.incidents import Incident, IncidentEvent
    from airflow_recon_provider.reconciliation.report import DivergenceSummary

log = logging.getLogger(__name__)

#: the divergence watch's default lookback (``DivergenceTrigger(lookback_cycles=3)``)
DEFAULT_CYCLES = 3
MAX_CYCLES = 24 * 7
#: timeline events shown per incident (the most recent ones; finance updates add one every 30 min)
TIMELINE_LIMIT = 25
CORRECTIONS_LIMIT = 10
#: rows of the page that lists every correction of a PSP
CORRECTIONS_PAGE_SIZE = 50

_RECENT_CORRECTIONS_SQL = (
    "SELECT applied_at, incident_id, transaction_id, provider_reference, transaction_type, kind,"
    " amount_minor, currency, requested_by, approved_by, run_id"
    " FROM recon.corrections WHERE psp = %s ORDER BY applied_at DESC, id DESC LIMIT %s OFFSET %s"
)
_CORRECTIONS_COUNT_SQL = "SELECT count(*) FROM recon.corrections WHERE psp = %s"


class DashboardUnavailable(Exception):
    """The dashboard cannot show anything: the message says why and what to do."""

    def __init__(self, message: str, *, status_code: int = 503) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True)
class CorrectionView:
    """One row of ``recon.corrections``: a corrected transaction and who approved it."""

    applied_at: datetime
    incident_id: str | None
    transaction_id: int
    provider_reference: str
    transaction_type: str
    kind: str
    amount_minor: int
    #: the transaction's currency: the amount is in its minor units
    currency: str
    requested_by: str
    approved_by: str
    run_id: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied_at": self.applied_at.isoformat(),
            "incident_id": self.incident_id,
            "transaction_id": self.transaction_id,
            "provider_reference": self.provider_reference,
            "transaction_type": self.transaction_type,
            "kind": self.kind,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "requested_by": self.requested_by,
            "approved_by": self.approved_by,
            "run_id": self.run_id,
        }


@dataclass(frozen=True)
class RemediationLink:
    """How to start ``billing_gateway_remediation`` for a PSP, pre-filled.

    Airflow 3.3's trigger form cannot be pre-filled from the URL (its form only takes a
    previous run's configuration), so the dashboard carries its own pre-filled form (PSP,
    the incident's window, the open incident, dry run ticked) that triggers the run through
    Airflow's public REST API as the logged-in user (``trigger_api``): Airflow validates the
    values against the DAG's Params, checks that the user may trigger the DAG and records them
    as the run's triggering user. The DAG page (``path``) stays one click away.
    """

    dag_id: str
    psp: str
    window: Window
    incident_id: str | None = None

    @property
    def path(self) -> str:
        """The DAG page, relative to the Airflow UI root."""
        return f"dags/{quote(self.dag_id)}"

    @property
    def trigger_api(self) -> str:
        """Airflow's REST endpoint that creates a run, relative to the Airflow UI root."""
        return f"api/v2/dags/{quote(self.dag_id)}/dagRuns"

    @property
    def conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "psp": self.psp,
            "window_start": _iso(self.window.start),
            "window_end": _iso(self.window.end),
            "dry_run": True,
        }
        if self.incident_id:
            conf["incident_id"] = self.incident_id
        return conf

    def as_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "url": "/" + self.path,
            "trigger_api": "/" + self.trigger_api,
            "conf": self.conf,
        }


@dataclass(frozen=True)
class PspStatus:
    """One row of the dashboard. ``problems`` lists what could not be read for this PSP."""

    psp: str
    display_name: str
    window: Window
    summary: DivergenceSummary | None = None
    control: Control | None = None
    incident: Incident | None = None
    timeline: tuple[IncidentEvent, ...] = ()
    earlier_events: int = 0
    corrections: tuple[CorrectionView, ...] = ()
    #: every correction of the PSP (``corrections`` holds the latest ones)
    corrections_total: int = 0
    #: the reconciliation cycles of the window by their latest status (``success``, ``failed``,
    #: ``running``); ``None`` when they could not be read
    cycle_counts: dict[str, int] | None = None
    problems: tuple[str, ...] = ()

    @property
    def failed_cycles(self) -> int:
        """Cycles of the window whose latest run failed: a lag of 0 does not make them healthy."""
        return (self.cycle_counts or {}).get("failed", 0)

    @property
    def remediation(self) -> RemediationLink:
        window = self.incident.window if self.incident and self.incident.window else self.window
        incident_id = self.incident.incident_id if self.incident else None
        return RemediationLink(REMEDIATION_DAG_ID, self.psp, window, incident_id)

    @property
    def alert(self) -> bool:
        return bool(self.summary and self.summary.alert)

    @property
    def paused(self) -> bool:
        return bool(self.control and self.control.state.value == "paused")

    def as_dict(self) -> dict[str, Any]:
        summary = self.summary.as_dict() if self.summary else None
        incident = None
        if self.incident is not None:
            i = self.incident
            incident = {
                "incident_id": i.incident_id,
                "state": i.state.value,
                "opened_by": i.opened_by,
                "opened_at": i.opened_at.isoformat(),
                "updated_at": i.updated_at.isoformat() if i.updated_at else None,
                "window_start": _iso(i.window.start) if i.window else None,
                "window_end": _iso(i.window.end) if i.window else None,
                "reason": i.reason,
                "psp_ticket": i.psp_ticket,
                "eta_resumption": i.eta_resumption.isoformat() if i.eta_resumption else None,
                "figures": i.figures.as_dict() if i.figures else None,
                "earlier_events": self.earlier_events,
                "timeline": [_event_dict(e) for e in self.timeline],
            }
        return {
            "psp": self.psp,
            "display_name": self.display_name,
            "window_start": _iso(self.window.start),
            "window_end": _iso(self.window.end),
            "summary": summary,
            "control": self.control.as_dict() if self.control else None,
            "incident": incident,
            "corrections": [c.as_dict() for c in self.corrections],
            "corrections_total": self.corrections_total,
            "cycle_counts": self.cycle_counts,
            "failed_cycles": self.failed_cycles,
            "remediation": self.remediation.as_dict(),
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class Dashboard:
    """Every PSP's status over one window, as of ``generated_at``."""

    generated_at: datetime
    window: Window
    cycles: int
    reference: datetime
    psps: tuple[PspStatus, ...]
    psp_source: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat(),
            "window_start": _iso(self.window.start),
            "window_end": _iso(self.window.end),
            "cycles": self.cycles,
            "lag_reference": self.reference.isoformat(),
            "psp_source": self.psp_source,
            "notes": list(self.notes),
            "psps": [p.as_dict() for p in self.psps],
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _event_dict(event: IncidentEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "step": event.step,
        "label": event.label,
        "outcome": event.outcome,
        "actor": event.actor,
        "created_at": event.created_at.isoformat(),
        "run_id": event.run_id,
        "figures": event.figures.as_dict() if event.figures else None,
    }


def dashboard_window(now: datetime, cycles: int, end: datetime | None = None) -> tuple[Window, datetime]:
    """The window shown and the reference time of the lag.

    Without ``end``: the last ``cycles`` completed hourly cycles before ``now`` (what the
    divergence watch checks), lag as of now. With ``end`` (looking back at a past period):
    the ``cycles`` cycles before ``end`` rounded down to its cycle, lag as of that end.
    """
    if not 1 <= cycles <= MAX_CYCLES:
        raise ReconError(f"cycles must be between 1 and {MAX_CYCLES}, got {cycles}")
    if end is None:
        return watch_window(now, cycles), now
    end = floor_cycle(end)
    return Window(end - cycles * CYCLE, end), end


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class DashboardReader:
    """Reads the dashboard through :class:`BillingGatewayHook`, :class:`IncidentHook` and
    :class:`ReconciliationControlHook`, all on the same connection.

    :param billing_gateway_conn_id: Airflow connection of the gateway database.
    :param config_loader: returns the reconciliation configuration (``ReconConfig.load``).
    """

    def __init__(
        self,
        *,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        config_loader: Callable[[], ReconConfig] = ReconConfig.load,
    ) -> None:
        self.conn_id = billing_gateway_conn_id
        self.config_loader = config_loader

    def read(self, *, cycles: int = DEFAULT_CYCLES, end: datetime | None = None) -> Dashboard:
        """Every PSP's status; :class:`DashboardUnavailable` when nothing can be shown."""
        now = datetime.now(UTC)
        try:
            window, reference = dashboard_window(now, cycles, end)
        except ReconError as exc:
            raise DashboardUnavailable(str(exc), status_code=400) from None
        try:
            return self._read(now, window, reference, cycles)
        except (ConnectionMissingError, DatabaseUnavailableError) as exc:
            raise DashboardUnavailable(str(exc)) from None
        except ConfigError as exc:
            raise DashboardUnavailable(f"the reconciliation configuration is invalid: {exc}") from None
        except DashboardUnavailable:
            raise
        except Exception as exc:
            if _is_missing_connection(exc):
                from airflow_recon_provider.hooks._connections import missing_connection_error

                raise DashboardUnavailable(str(missing_connection_error(self.conn_id))) from None
            if _is_database_error(exc):
                raise DashboardUnavailable(
                    f"the database of connection {self.conn_id!r} failed: {_first_line(exc)}"
                ) from None
            log.exception("reconciliation dashboard failed")
            raise DashboardUnavailable(
                f"unexpected error ({type(exc).__name__}: {_first_line(exc)}); "
                "the API server log has the details",
                status_code=500,
            ) from None

    # -- internals --------------------------------------------------------------------------
    def _read(self, now: datetime, window: Window, reference: datetime, cycles: int) -> Dashboard:
        from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
        from airflow_recon_provider.hooks.controls import ReconciliationControlHook
        from airflow_recon_provider.hooks.incidents import IncidentHook

        config = self.config_loader()
        gateway = BillingGatewayHook(billing_gateway_conn_id=self.conn_id, config=config)
        incidents = IncidentHook(billing_gateway_conn_id=self.conn_id, config=config)
        controls = ReconciliationControlHook(billing_gateway_conn_id=self.conn_id, config=config)

        if config.psps:
            names, source = config.psp_names, "configured"
        else:
            names, source = gateway.known_psps(), "payment_intents"
        notes: list[str] = []
        if not names:
            notes.append(
                "No PSP is configured (RECON_CONFIG) and payment_intents has no provider yet: "
                "nothing to show."
            )
        recon_ready = self._recon_schema_exists(gateway)
        if not recon_ready:
            notes.append(
                "The provider's recon schema does not exist in this database: pause state, incidents "
                "and corrections are not available until `airflow-recon migrate` runs."
            )
        open_by_psp: dict[str, Incident] = {}
        if recon_ready:
            for incident in incidents.list_open():
                open_by_psp.setdefault(incident.psp, incident)

        rows = [
            self._psp_status(
                name,
                config.psp(name).display_name,
                window,
                reference,
                gateway=gateway,
                incidents=incidents,
                controls=controls,
                incident=open_by_psp.get(name),
                recon_ready=recon_ready,
            )
            for name in names
        ]
        return Dashboard(
            generated_at=now,
            window=window,
            cycles=cycles,
            reference=reference,
            psps=tuple(rows),
            psp_source=source,
            notes=tuple(notes),
        )

    @staticmethod
    def _recon_schema_exists(gateway: Any) -> bool:
        with gateway.connect(autocommit=True) as conn:
            row = conn.execute(
                "SELECT to_regclass('recon.incidents') IS NOT NULL AND to_regclass('recon.controls')"
                " IS NOT NULL AND to_regclass('recon.corrections') IS NOT NULL"
            ).fetchone()
        return bool(row and row[0])

    def _psp_status(
        self,
        psp: str,
        display_name: str,
        window: Window,
        reference: datetime,
        *,
        gateway: Any,
        incidents: Any,
        controls: Any,
        incident: Incident | None,
        recon_ready: bool,
    ) -> PspStatus:
        problems: list[str] = []

        def attempt(what: str, read: Callable[[], Any]) -> Any:
            try:
                return read()
            except (ConnectionMissingError, DatabaseUnavailableError):
                raise  # the whole page is affected
            except ReconError as exc:
                problems.append(f"{what}: {exc}")
            return None

        summary = attempt("divergence", lambda: gateway.summary(psp, window, reference=reference))
        cycles = attempt("reconciliation cycles", lambda: _cycle_counts(gateway.cycle_statuses(psp, window)))
        control = timeline = corrections = None
        total = 0
        if recon_ready:
            control = attempt("pause state", lambda: controls.get(psp))
            if incident is not None:
                timeline = attempt("incident timeline", lambda: incidents.timeline(incident.incident_id))
            page = attempt("corrections", lambda: self.corrections_page(psp, hook=incidents))
            if page is not None:
                corrections, total = page
        events: Sequence[IncidentEvent] = timeline or ()
        shown = tuple(events[-TIMELINE_LIMIT:])
        return PspStatus(
            psp=psp,
            display_name=display_name,
            window=window,
            summary=summary,
            control=control,
            incident=incident,
            timeline=shown,
            earlier_events=len(events) - len(shown),
            corrections=tuple(corrections or ()),
            corrections_total=total,
            cycle_counts=cycles,
            problems=tuple(problems),
        )

    def corrections_page(
        self, psp: str, *, page: int = 1, page_size: int = CORRECTIONS_LIMIT, hook: Any = None
    ) -> tuple[list[CorrectionView], int]:
        """One page of the PSP's corrections, latest first, and how many there are in all."""
        if page < 1 or page_size < 1:
            raise ReconError(f"page and page size must be at least 1, got {page} and {page_size}")
        if hook is None:
            from airflow_recon_provider.hooks.incidents import IncidentHook

            hook = IncidentHook(billing_gateway_conn_id=self.conn_id, config=self.config_loader())
        # recon.corrections has fixed names (the provider owns the schema); values are bound
        with hook.connect(autocommit=True) as conn:
            total = int(conn.execute(_CORRECTIONS_COUNT_SQL, (psp,)).fetchone()[0])
            rows = conn.execute(_RECENT_CORRECTIONS_SQL, (psp, page_size, (page - 1) * page_size)).fetchall()
        return [
            CorrectionView(
                applied_at=r[0],
                incident_id=r[1],
                transaction_id=int(r[2]),
                provider_reference=r[3],
                transaction_type=r[4],
                kind=r[5],
                amount_minor=int(r[6]),
                currency=r[7] or "",
                requested_by=r[8],
                approved_by=r[9],
                run_id=r[10],
            )
            for r in rows
        ], total

    def psp_display_name(self, psp: str) -> str | None:
        """The PSP's display name when it is configured (``None``: not a configured PSP)."""
        config = self.config_loader()
        if config.psps:
            return config.psp(psp).display_name if psp in config.psp_names else None
        return psp


def _cycle_counts(statuses: Sequence[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for cycle in statuses:
        counts[cycle.status] = counts.get(cycle.status, 0) + 1
    return counts


def _is_missing_connection(exc: BaseException) -> bool:
    from airflow_recon_provider.hooks._connections import is_missing_connection

    return is_missing_connection(exc)


def _is_database_error(exc: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a dependency of the package
        return False
    return isinstance(exc, psycopg.Error)


__all__ = [
    "CORRECTIONS_LIMIT",
    "CORRECTIONS_PAGE_SIZE",
    "DEFAULT_CYCLES",
    "MAX_CYCLES",
    "REMEDIATION_DAG_ID",
    "TIMELINE_LIMIT",
    "CorrectionView",
    "Dashboard",
    "DashboardReader",
    "DashboardUnavailable",
    "PspStatus",
    "RemediationLink",
    "dashboard_window",
]
