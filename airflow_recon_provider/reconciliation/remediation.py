"""The remediation request and the incident it belongs to (pure, no Airflow, no I/O).

Runbook *Billing Gateway — Falhas de Reconciliação*, Investigação 1 "Validar Escopo":
"Identificar PSP afetado, período (timestamp) e tipo de divergência". A remediation run
(the ``billing_gateway_remediation`` DAG, or a single-action DAG) starts from a request —
PSP, window, divergence kinds, incident, dry run, whether the break followed a release,
why — and this module decides:

- whether the request is valid (:meth:`RemediationRequest.parse`: each problem its own
  specific error, before anything is read or written);
- which incident the run records its steps on (:func:`plan_incident`): the incident named
  by the request, else the PSP's open incident, else a new one — never a new one in a dry
  run, which changes nothing;
- the names of the runbook steps on the incident timeline (:class:`RemediationStep`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.reconciliation.config import check_psp_name
from airflow_recon_provider.reconciliation.errors import DivergenceKindError, ReconError, WindowError
from airflow_recon_provider.reconciliation.kinds import ALL_KINDS, DivergenceKind, parse_kinds
from airflow_recon_provider.reconciliation.psp_ticket import EXTERNAL_KINDS
from airflow_recon_provider.reconciliation.window import DEFAULT_MAX_WINDOW, Window

if TYPE_CHECKING:
    from airflow_recon_provider.reconciliation.incidents import Incident

#: longest free text of the request's reason
REASON_MAX = 500


class RemediationRequestError(ReconError):
    """A remediation request (form or conf) is invalid; nothing was read or written."""


class RemediationStep:
    """Steps of the runbook as they appear on the incident timeline."""

    SCOPE = "investigation.scope"
    SNAPSHOT = "investigation.snapshot"
    PAUSE = "containment.pause"
    REPROCESS = "mitigation.reprocess"
    CORRECTION = "mitigation.data_correction"
    ROLLBACK = "mitigation.rollback"
    PSP_TICKET = "mitigation.psp_ticket"
    RECOVERY = "recovery.criteria"
    RESUME = "closure.resume"
    TAG_RELEASE = "closure.tag_release"


class IncidentAction(StrEnum):
    """What the run does about the incident."""

    #: the request named an existing incident of the PSP: steps go there
    GIVEN = "given"
    #: the PSP already had an open incident: steps go there
    ATTACHED = "attached"
    #: a new incident was opened (with the request's id, or a generated one)
    OPENED = "opened"
    #: dry run without any incident: a real run would open one
    WOULD_OPEN = "would_open"
    #: no incident and none opened (dry run, or a step that does not open incidents)
    NONE = "none"


def _blank(value: Any) -> bool:
    # a Jinja template renders a missing value as "" or "None"
    return value is None or (isinstance(value, str) and value.strip() in {"", "None", "null"})


def parse_bool(value: Any, *, name: str) -> bool:
    """A boolean from a param or a rendered template (``True``, ``"false"``, ``"1"`` ...)."""
    if isinstance(value, bool):
        return value
    text = "" if value is None else str(value).strip().lower()
    if text in {"true", "1", "yes", "y", "on"}:
        return True
    if text in {"false", "0", "no", "n", "off", "", "none", "null"}:
        return False
    raise RemediationRequestError(f"{name} must be true or false, got {value!r}")


def parse_kind_list(value: Any) -> tuple[DivergenceKind, ...]:
    """Kinds from a list, ``"a,b"`` or a rendered list ``"['a', 'b']"``; empty means all."""
    if _blank(value):
        return ALL_KINDS
    if isinstance(value, str) and value.strip().startswith(("[", "(")):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise DivergenceKindError(f"divergence kinds {value!r} are not a list of kind names") from None
    if isinstance(value, list | tuple) and not value:
        return ALL_KINDS
    if not isinstance(value, str | list | tuple):
        raise DivergenceKindError(f"divergence kinds {value!r} are not a list of kind names")
    return parse_kinds(value)


def _required(value: Any, name: str, example: str) -> Any:
    if _blank(value):
        raise WindowError(f"{name} is required: the {example}")
    return value


@dataclass(frozen=True)
class RemediationRequest:
    """What a person (or the divergence watch) asks a remediation run to do.

    :param psp: the PSP (a valid name; whether it is known is checked against the
        configuration or the database by the caller).
    :param window: the affected window ``[start, end)``.
    :param kinds: divergence kinds in scope (all when the request names none).
    :param incident_id: the incident named by the request (``INCIDENT-<n>``), if any.
    :param dry_run: investigate and propose corrections only; nothing is paused,
        reprocessed or applied.
    :param after_release: the break followed a release of the worker (rollback applies).
    :param reason: why, in the requester's words.
    """

    psp: str
    window: Window
    kinds: tuple[DivergenceKind, ...] = ALL_KINDS
    incident_id: str | None = None
    dry_run: bool = True
    after_release: bool = False
    reason: str = ""

    @classmethod
    def parse(
        cls,
        *,
        psp: Any,
        window_start: Any,
        window_end: Any,
        kinds: Any = None,
        incident_id: Any = None,
        dry_run: Any = True,
        after_release: Any = False,
        reason: Any = "",
        max_window: timedelta | None = DEFAULT_MAX_WINDOW,
    ) -> RemediationRequest:
        """Validate every field of a request; the first problem raises its own error:
        :class:`UnknownPspError` (malformed PSP name), :class:`WindowError` (missing,
        malformed, end not after start, larger than ``max_window``),
        :class:`DivergenceKindError`, :class:`IncidentIdError`,
        :class:`RemediationRequestError` (booleans, reason)."""
        from airflow_recon_provider.reconciliation.incidents import check_incident_id

        if _blank(psp):
            raise RemediationRequestError("psp is required: the PSP whose reconciliation diverges")
        name = check_psp_name(str(psp).strip())
        start = _required(
            window_start, "window_start", "start of the affected period, e.g. 2026-11-20T10:00Z"
        )
        end = _required(
            window_end, "window_end", "end of the affected period (exclusive), e.g. 2026-11-20T14:00Z"
        )
        window = Window.parse(start, end, max_span=max_window)
        incident = None if _blank(incident_id) else check_incident_id(incident_id)
        text = "" if _blank(reason) else str(reason).strip()
        if len(text) > REASON_MAX:
            raise RemediationRequestError(f"reason is longer than {REASON_MAX} characters")
        return cls(
            psp=name,
            window=window,
            kinds=parse_kind_list(kinds),
            incident_id=incident,
            dry_run=parse_bool(dry_run, name="dry_run"),
            after_release=parse_bool(after_release, name="after_release"),
            reason=text,
        )

    @property
    def ticket_kinds(self) -> tuple[DivergenceKind, ...]:
        """The kinds of the request a PSP ticket covers (external inconsistencies)."""
        return tuple(kind for kind in self.kinds if kind in EXTERNAL_KINDS)

    def describe(self, requested_by: str) -> str:
        """The request in words (the language in force), for the timeline."""
        from airflow_recon_provider.reconciliation.i18n import _
        from airflow_recon_provider.reconciliation.incidents import format_window
        from airflow_recon_provider.reconciliation.steps import kind_name

        kinds = _("all kinds") if self.kinds == ALL_KINDS else ", ".join(kind_name(k) for k in self.kinds)
        text = _(
            "remediation of PSP %(psp)s over %(window)s (%(kinds)s) requested by %(who)s",
            psp=self.psp,
            window=format_window(self.window),
            kinds=kinds,
            who=requested_by,
        )
        if self.dry_run:
            text += "; " + _("dry run: nothing is paused, reprocessed or applied")
        if self.after_release:
            text += "; " + _("the break followed a release")
        return text + ("; " + _("reason: %(reason)s", reason=self.reason) if self.reason else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "psp": self.psp,
            "window_start": self.window.start.isoformat(),
            "window_end": self.window.end.isoformat(),
            "divergence_kinds": [k.value for k in self.kinds],
            # the same lists as text, for templates of other tasks
            "divergence_kinds_csv": ",".join(k.value for k in self.kinds),
            "psp_ticket_kinds_csv": ",".join(k.value for k in self.ticket_kinds),
            "incident_id": self.incident_id,
            "dry_run": self.dry_run,
            "after_release": self.after_release,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class IncidentPlan:
    """Which incident the run records its steps on, and what to do to get it."""

    action: IncidentAction
    incident_id: str | None

    @property
    def opens(self) -> bool:
        return self.action is IncidentAction.OPENED


def plan_incident(
    *,
    psp: str,
    requested_id: str | None,
    requested: Incident | None,
    open_for_psp: Incident | None,
    dry_run: bool,
    may_open: bool = True,
) -> IncidentPlan:
    """Attach to the requested incident, else to the PSP's open one, else open one.

    :param requested_id: the incident id of the request, if any.
    :param requested: that incident as stored (``None`` when it does not exist).
    :param open_for_psp: the PSP's incident that is not closed, if any (at most one).
    :param dry_run: never open an incident (a dry run changes nothing).
    :param may_open: this run may open an incident when there is none (a step that changes
        payment data or pauses a PSP may; a read-only step need not).
    :raises RemediationRequestError: the requested incident is of another PSP or closed, or
        does not exist while the PSP already has another open incident.
    """
    from airflow_recon_provider.reconciliation.incidents import IncidentState

    if requested_id:
        if requested is not None:
            if requested.psp != psp:
                raise RemediationRequestError(
                    f"incident {requested_id} is about PSP {requested.psp}, not {psp}; "
                    "name the PSP's own incident or leave incident_id empty"
                )
            if requested.state is IncidentState.CLOSED:
                raise RemediationRequestError(
                    f"incident {requested_id} is closed; a new divergence needs a new incident "
                    "(leave incident_id empty to open one)"
                )
            return IncidentPlan(IncidentAction.GIVEN, requested_id)
        if open_for_psp is not None:
            raise RemediationRequestError(
                f"incident {requested_id} does not exist and PSP {psp} already has the open incident "
                f"{open_for_psp.incident_id} ({open_for_psp.state.value}); name that one or leave "
                "incident_id empty"
            )
        if dry_run or not may_open:
            return IncidentPlan(IncidentAction.WOULD_OPEN if dry_run else IncidentAction.NONE, None)
        return IncidentPlan(IncidentAction.OPENED, requested_id)
    if open_for_psp is not None:
        return IncidentPlan(IncidentAction.ATTACHED, open_for_psp.incident_id)
    if dry_run:
        return IncidentPlan(IncidentAction.WOULD_OPEN, None)
    if not may_open:
        return IncidentPlan(IncidentAction.NONE, None)
    return IncidentPlan(IncidentAction.OPENED, None)


__all__ = [
    "REASON_MAX",
    "IncidentAction",
    "IncidentPlan",
    "RemediationRequest",
    "RemediationRequestError",
    "RemediationStep",
    "parse_bool",
    "parse_kind_list",
    "plan_incident",
]
