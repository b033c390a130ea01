"""The incident record and what finance is told: pure domain, no Airflow, no I/O.

Runbook *Billing Gateway — Falhas de Reconciliação*:

- Comunicação: "Atualizar incidente com percentual de divergência e passos executados",
  "Enviar resumo para finance@platform.io a cada 30 minutos até normalização",
  "Registrar número do ticket do PSP (se houver) no incidente";
- Ações de Contenção: "Informar time financeiro sobre congelamento temporário e
  estimativa de retomada";
- Encerramento: lessons learned attached to the incident (e.g. ``INCIDENT-472``).

Here live the incident states and their allowed transitions, the frozen records of an
incident, its timeline events and its corrections, the content of an update, and the
renderers: plain text and HTML e-mail, Slack blocks, and the closing report in markdown
and HTML. Every renderer works from one small document model, so the text, HTML and
markdown versions never say different things. Amounts are ``int`` minor units of their own
currency (DESIGN 3a): what people read carries its currency and that currency's decimals,
Brazilian formatting (:func:`money.format_money`); a converted total says so and gives its
rates, and amounts of different currencies are never added. The divergence % comes from
:func:`report.divergence_pct`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.names import FINANCE_EMAIL
from airflow_recon_provider.reconciliation.errors import (
    IllegalTransitionError,
    IncidentAlreadyOpenError,
    IncidentError,
    IncidentExistsError,
    IncidentIdError,
    IncidentInputError,
    IncidentNotFoundError,
    IncidentStateError,
)
from airflow_recon_provider.reconciliation.figures import Figures, money_text
from airflow_recon_provider.reconciliation.i18n import _
from airflow_recon_provider.reconciliation.steps import (
    step_title,
)

if TYPE_CHECKING:
    from airflow_recon_provider.reconciliation.window import Window

#: finance's mailbox in the runbook (Comunicação); a site configures its own
FINANCE_RECIPIENTS_DEFAULT = FINANCE_EMAIL
#: the runbook's cadence: "a cada 30 minutos até normalização"
UPDATE_CADENCE = timedelta(minutes=30)
#: the identifiers the remediation DAG's form accepts (``INCIDENT-472``); at most 18 digits
#: so the number always fits the bigint sequence that generates them
INCIDENT_ID_RE = re.compile(r"INCIDENT-([0-9]{1,18})")
INCIDENT_ID_PATTERN = r"^INCIDENT-\d+$"


# -- errors -------------------------------------------------------------------------------


class IncidentState(StrEnum):
    """``open -> mitigating -> recovered -> closed``."""

    OPEN = "open"
    MITIGATING = "mitigating"
    RECOVERED = "recovered"
    CLOSED = "closed"


#: Allowed transitions. A divergence may clear without mitigation (open -> recovered) and
#: may come back before closure (recovered -> mitigating); closing requires recovery first
#: (runbook: Critérios de Recuperação, then Encerramento); a closed incident is final —
#: a new divergence opens a new incident.
TRANSITIONS: Mapping[IncidentState, frozenset[IncidentState]] = {
    IncidentState.OPEN: frozenset({IncidentState.MITIGATING, IncidentState.RECOVERED}),
    IncidentState.MITIGATING: frozenset({IncidentState.RECOVERED}),
    IncidentState.RECOVERED: frozenset({IncidentState.MITIGATING, IncidentState.CLOSED}),
    IncidentState.CLOSED: frozenset(),
}

#: states in which reconciliation is normalized: finance gets one final update, then silence
NORMALIZED_STATES = frozenset({IncidentState.RECOVERED, IncidentState.CLOSED})


def parse_state(value: str | IncidentState) -> IncidentState:
    try:
        return IncidentState(str(value).strip().lower())
    except ValueError:
        raise IncidentStateError(
            f"incident state {value!r} does not exist; states are {', '.join(s.value for s in IncidentState)}"
        ) from None


def check_transition(incident_id: str, current: IncidentState, target: IncidentState) -> None:
    """Refuse a transition that :data:`TRANSITIONS` does not allow."""
    allowed = TRANSITIONS[current]
    if target in allowed:
        return
    if current is IncidentState.CLOSED:
        why = "a closed incident is final; open a new incident for a new divergence"
    elif target is current:
        why = f"it already is {current.value}"
    elif target is IncidentState.CLOSED:
        why = "an incident is closed only after it recovered (runbook: Critérios de Recuperação)"
    else:
        why = f"from {current.value} it can move to {', '.join(sorted(s.value for s in allowed))}"
    raise IllegalTransitionError(
        f"incident {incident_id} cannot move from {current.value} to {target.value}: {why}"
    )


# -- identifiers ------------------------------------------------------------------------------


def check_incident_id(value: Any) -> str:
    """Return ``value`` when it is ``INCIDENT-<number>``, else :class:`IncidentIdError`."""
    if not isinstance(value, str) or not INCIDENT_ID_RE.fullmatch(value):
        raise IncidentIdError(
            f"incident id {value!r} is malformed; expected INCIDENT-<number>, e.g. INCIDENT-472"
        )
    return value


def format_incident_id(number: int) -> str:
    return f"INCIDENT-{int(number)}"


def incident_number(incident_id: str) -> int:
    match = INCIDENT_ID_RE.fullmatch(check_incident_id(incident_id))
    assert match is not None
    return int(match.group(1))


def check_text(value: Any, *, what: str, max_length: int = 2000, required: bool = True) -> str:
    """A stripped, bounded, single-purpose text field (actor, step, outcome, ticket...)."""
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise IncidentInputError(f"{what} is required (a non-empty text)")
    text = value.strip()
    if len(text) > max_length:
        raise IncidentInputError(f"{what} is longer than {max_length} characters")
    return text


def check_aware(value: Any, *, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise IncidentInputError(f"{what} must be a timezone-aware date-time, got {value!r}")
    return value.astimezone(UTC)


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Incident:
    """One row of ``recon.incidents``; ``figures`` are the latest recorded on it."""

    incident_id: str
    psp: str
    state: IncidentState
    opened_by: str
    opened_at: datetime
    updated_at: datetime | None = None
    window: Window | None = None
    reason: str = ""
    psp_ticket: str | None = None
    eta_resumption: datetime | None = None
    figures: Figures | None = None
    recovered_at: datetime | None = None
    closed_at: datetime | None = None
    communication_done_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        """Open in the sense of the one-open-incident-per-PSP rule: not closed."""
        return self.state is not IncidentState.CLOSED

    @property
    def normalized(self) -> bool:
        return self.state in NORMALIZED_STATES


#: steps this package records itself; other operators record their own runbook steps
class Step:
    OPENED = "incident.opened"
    STATE = "incident.state"
    PSP_TICKET = "incident.psp_ticket"
    ETA = "incident.eta_resumption"
    CLOSING_REPORT = "incident.closing_report"
    UPDATE = "communication.update"
    NORMALIZED = "communication.normalized"
    UPDATE_MISSED = "communication.update_missed"
    CONTAINMENT_NOTICE = "communication.containment_notice"


#: events about telling people, as opposed to runbook steps executed
COMMUNICATION_PREFIX = "communication."


@dataclass(frozen=True)
class IncidentEvent:
    """One row of ``recon.incident_events``: a step executed, its outcome, the divergence
    at that moment, who did it and in which Airflow run."""

    id: int
    incident_id: str
    step: str
    outcome: str
    actor: str
    created_at: datetime
    run_id: str | None = None
    figures: Figures | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_communication(self) -> bool:
        return self.step.startswith(COMMUNICATION_PREFIX)

    @property
    def label(self) -> str:
        """The runbook's heading and step name, never the internal id: ``Ações de Contenção —
        Reconciliação automática pausada`` (:mod:`.steps`), in the language in force."""
        return step_title(self.step, self.details)


@dataclass(frozen=True)
class CorrectionRecord:
    """One row of ``recon.corrections``: a corrected transaction and who approved it.
    ``amount_minor`` is in ``currency`` (``None``: recorded before corrections kept it)."""

    transaction_id: int
    provider_reference: str
    transaction_type: str
    kind: str
    amount_minor: int
    requested_by: str
    approved_by: str
    run_id: str
    applied_at: datetime
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)
    currency: str | None = None

    @property
    def money(self) -> str:
        return money_text(self.amount_minor, self.currency)


# -- message content ---------------------------------------------------------------------------


def format_time(moment: datetime | None, *, date: bool = True) -> str:
    if moment is None:
        return "-"
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC" if date else "%H:%M UTC")


def format_window(window: Window | None) -> str:
    if window is None:
        return _("not recorded")
    return _("%(start)s to %(end)s", start=format_time(window.start), end=format_time(window.end))


def format_duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days}d"] if days else []
    if hours or days:
        parts.append(f"{hours}h")
    parts.append(f"{minutes:02d}min" if parts else f"{minutes}min")
    return " ".join(parts)


def missed_slots(
    previous: datetime | None, current: datetime, *, cadence: timedelta = UPDATE_CADENCE
) -> list[datetime]:
    """The update slots (multiples of ``cadence`` since the epoch) strictly between the
    previous update (or the opening) and ``current``: updates that were due and never tried."""
    if previous is None or current <= previous:
        return []
    step = int(cadence.total_seconds())
    if step <= 0:
        return []
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = int((previous - epoch).total_seconds()) // step + 1
    slots = []
    n = first
    while True:
        moment = epoch + timedelta(seconds=n * step)
        if moment >= current:
            break
        slots.append(moment)
        n += 1
        if len(slots) >= 48:  # a day of missed slots is enough to tell; the rest is noise
            break
    return slots


__all__ = [
    "COMMUNICATION_PREFIX",
    "FINANCE_RECIPIENTS_DEFAULT",
    "INCIDENT_ID_PATTERN",
    "NORMALIZED_STATES",
    "TRANSITIONS",
    "UPDATE_CADENCE",
    "CorrectionRecord",
    "IllegalTransitionError",
    "Incident",
    "IncidentAlreadyOpenError",
    "IncidentError",
    "IncidentEvent",
    "IncidentExistsError",
    "IncidentIdError",
    "IncidentInputError",
    "IncidentNotFoundError",
    "IncidentState",
    "IncidentStateError",
    "Step",
    "check_aware",
    "check_incident_id",
    "check_text",
    "check_transition",
    "format_duration",
    "format_incident_id",
    "format_time",
    "format_window",
    "incident_number",
    "missed_slots",
    "parse_state",
]
