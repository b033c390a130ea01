"""Per-PSP control of automatic reconciliation (pure, no Airflow, no I/O).

Runbook *Billing Gateway — Falhas de Reconciliação*, Ações de Contenção: "Pausar
reconciliação automática para PSP afetado: ``/billing-gateway reconciliation pause <psp>``";
Encerramento: "Retomar reconciliação automática (``... resume <psp>``)".

A PSP is ``active`` or ``paused`` in ``recon.controls`` (who, why, incident, when), and every
change is a row of ``recon.control_events``. Paused means the *automatic* (scheduled) runs of
``billing_gateway_reconciliation`` skip the PSP; runs started to reprocess its cycles (conf
``reprocess: true``, set by ``ReprocessReconciliationOperator``) still reconcile it, since
reprocessing is the runbook's next step after containment.

This module holds the states, the outcome of a change and the Slack message that announces
it in the incidents channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from airflow_recon_provider.reconciliation.incidents import (
    MessageKind,
    RenderedMessage,
    _Fields,
    _Heading,
    _Para,
    _slack_blocks,
    _slack_escape,
    _to_html,
    _to_text,
    format_time,
)


class ControlState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"

    @property
    def verb(self) -> str:
        return "paused" if self is ControlState.PAUSED else "resumed"

    @property
    def command(self) -> str:
        return "pause" if self is ControlState.PAUSED else "resume"


@dataclass(frozen=True)
class Control:
    """One row of ``recon.controls``; a PSP without a row is ``active``."""

    psp: str
    state: ControlState
    reason: str = ""
    actor: str = ""
    incident_id: str | None = None
    changed_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "psp": self.psp,
            "state": self.state.value,
            "reason": self.reason,
            "actor": self.actor,
            "incident_id": self.incident_id,
            "changed_at": self.changed_at.isoformat() if self.changed_at else None,
        }


@dataclass(frozen=True)
class ControlChange:
    """What asking for a state did.

    :param requested: the state asked for.
    :param control: the control as it is now.
    :param previous: the control before the request.
    :param changed: this request wrote the new state (and a ``recon.control_events`` row).
    :param retry: the PSP already was in that state because of this very Airflow run (a
        retry of the task): nothing is written again, the notifications are completed.
    :param event_id: the ``recon.control_events`` row written, when ``changed``.
    """

    requested: ControlState
    control: Control
    previous: Control
    changed: bool
    retry: bool = False
    event_id: int | None = None

    @property
    def outcome(self) -> str:
        """``paused`` / ``resumed``, or ``already_paused`` / ``already_active``."""
        if self.changed or self.retry:
            return self.requested.verb
        return f"already_{self.requested.value}"

    def describe(self) -> str:
        psp = self.control.psp
        if self.changed or self.retry:
            text = f"automatic reconciliation of PSP {psp} {self.requested.verb} by {self.control.actor}"
            return text + (f" ({self.control.reason})" if self.control.reason else "")
        since = format_time(self.previous.changed_at) if self.previous.changed_at else "always"
        who = f" by {self.previous.actor}" if self.previous.actor else ""
        why = f" ({self.previous.reason})" if self.previous.reason else ""
        return (
            f"PSP {psp} was already {self.requested.value} (since {since}{who}{why}): "
            "nothing recorded, nobody notified"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "changed": self.changed,
            "retry": self.retry,
            "control": self.control.as_dict(),
            "previous": self.previous.as_dict(),
            "event_id": self.event_id,
        }


def control_subject(change: ControlChange) -> str:
    control = change.control
    prefix = f"[{control.incident_id}]" if control.incident_id else "[billing gateway]"
    return f"{prefix} reconciliation of {control.psp} {change.requested.verb} by {control.actor}"


def render_control_message(change: ControlChange, *, run_id: str | None = None) -> RenderedMessage:
    """The incidents channel hears what the Slack bot's ``/billing-gateway reconciliation
    pause|resume <psp>`` used to say: who, why, incident, when, and what it means."""
    control = change.control
    paused = change.requested is ControlState.PAUSED
    title = f"PSP {control.psp} · automatic reconciliation {change.requested.verb}"
    fields = [
        ("PSP", control.psp),
        ("State", control.state.value),
        ("By", control.actor),
        ("Why", control.reason or "-"),
        ("Incident", control.incident_id or "none"),
        ("When", format_time(control.changed_at)),
    ]
    if run_id:
        fields.append(("Airflow run", run_id))
    if paused:
        explanation = (
            f"Scheduled runs of billing_gateway_reconciliation skip {control.psp} until it is resumed "
            "(runbook: Ações de Contenção). Reprocessing its cycles still runs."
        )
    else:
        explanation = (
            f"Scheduled runs of billing_gateway_reconciliation reconcile {control.psp} again "
            "(runbook: Encerramento)."
        )
    footer = f"/billing-gateway reconciliation {change.requested.command} {control.psp}"
    blocks = [_Heading(title, 1), _Para(explanation), _Fields(tuple(fields)), _Para(footer)]
    subject = control_subject(change)
    return RenderedMessage(
        kind=MessageKind.CONTROL,
        subject=subject,
        text=_to_text(blocks),
        html=_to_html(blocks, title=subject),
        slack_text=subject,
        slack_blocks=_slack_blocks(title, fields, [_slack_escape(explanation)], footer),
    )


__all__ = [
    "Control",
    "ControlChange",
    "ControlState",
    "control_subject",
    "render_control_message",
]
