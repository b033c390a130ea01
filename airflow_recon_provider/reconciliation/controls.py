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

from airflow_recon_provider.reconciliation.i18n import _
from airflow_recon_provider.reconciliation.incident_messages import (
    MessageKind,
    RenderedMessage,
    _Fields,
    _Heading,
    _Para,
    _slack_blocks,
    _slack_escape,
    _to_html,
    _to_text,
)
from airflow_recon_provider.reconciliation.incidents import format_time


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
        """What happened, for the timeline and the task's log (in the language in force)."""
        psp = self.control.psp
        paused = self.requested is ControlState.PAUSED
        if self.changed or self.retry:
            if paused:
                text = _(
                    "automatic reconciliation of PSP %(psp)s paused by %(who)s",
                    psp=psp,
                    who=self.control.actor,
                )
            else:
                text = _(
                    "automatic reconciliation of PSP %(psp)s resumed by %(who)s",
                    psp=psp,
                    who=self.control.actor,
                )
            return text + (f" ({self.control.reason})" if self.control.reason else "")
        since = format_time(self.previous.changed_at) if self.previous.changed_at else _("always")
        if self.previous.actor:
            since = _("%(when)s by %(who)s", when=since, who=self.previous.actor)
        if self.previous.reason:
            since += f", {self.previous.reason}"
        if paused:
            return _(
                "PSP %(psp)s was already paused (since %(since)s): nothing recorded, nobody notified",
                psp=psp,
                since=since,
            )
        return _(
            "PSP %(psp)s was already active (since %(since)s): nothing recorded, nobody notified",
            psp=psp,
            since=since,
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
    if change.requested is ControlState.PAUSED:
        return _(
            "%(prefix)s reconciliation of %(psp)s paused by %(who)s",
            prefix=prefix,
            psp=control.psp,
            who=control.actor,
        )
    return _(
        "%(prefix)s reconciliation of %(psp)s resumed by %(who)s",
        prefix=prefix,
        psp=control.psp,
        who=control.actor,
    )


def render_control_message(change: ControlChange, *, run_id: str | None = None) -> RenderedMessage:
    """The incidents channel hears what the Slack bot's ``/billing-gateway reconciliation
    pause|resume <psp>`` used to say: who, why, incident, when, and what it means."""
    control = change.control
    paused = change.requested is ControlState.PAUSED
    if paused:
        title = _("PSP %(psp)s · automatic reconciliation paused", psp=control.psp)
    else:
        title = _("PSP %(psp)s · automatic reconciliation resumed", psp=control.psp)
    states = {"paused": _("paused"), "active": _("active")}
    fields = [
        (_("PSP"), control.psp),
        (_("State"), states.get(control.state.value, control.state.value)),
        (_("By"), control.actor),
        (_("Why"), control.reason or "-"),
        (_("Incident"), control.incident_id or _("none")),
        (_("When"), format_time(control.changed_at)),
    ]
    if run_id:
        fields.append((_("Airflow run"), run_id))
    if paused:
        explanation = _(
            "Scheduled runs of billing_gateway_reconciliation skip %(psp)s until it is resumed "
            "(runbook: %(section)s). Reprocessing its cycles still runs.",
            psp=control.psp,
            section=_("Containment Actions"),
        )
    else:
        explanation = _(
            "Scheduled runs of billing_gateway_reconciliation reconcile %(psp)s again "
            "(runbook: %(section)s).",
            psp=control.psp,
            section=_("Closure"),
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
