"""The runbook's headings and step names for the step ids recorded on the timeline.

Internal ids (``investigation.scope``, ``containment.pause``) are for code and the database;
people read the runbook's own words: "Validar Escopo" under "Investigação", "Reconciliação
automática pausada" under "Ações de Contenção". One table for every surface (e-mail, Slack,
closing report, dashboard), translated at rendering (:mod:`.i18n`; the English message ids
are translated to the runbook's Portuguese by the pt_BR catalog).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_recon_provider.reconciliation.i18n import N_, _

# -- the runbook's headings ("## Detecção", "## Investigação", ...) -------------------------------

DETECTION = N_("Detection")
INVESTIGATION = N_("Investigation")
CONTAINMENT = N_("Containment Actions")
MITIGATION = N_("Mitigation")
DATA_CORRECTION = N_("Data Correction")
COMMUNICATION = N_("Communication")
RECOVERY = N_("Recovery Criteria")
CLOSURE = N_("Closure")
OTHER = N_("Other")

#: the headings in the runbook's order (message ids; translate with :func:`section_title`)
SECTIONS: tuple[str, ...] = (
    DETECTION,
    INVESTIGATION,
    CONTAINMENT,
    MITIGATION,
    DATA_CORRECTION,
    COMMUNICATION,
    RECOVERY,
    CLOSURE,
)

#: step id -> (runbook heading, step name), both message ids
STEPS: Mapping[str, tuple[str, str]] = {
    "incident.opened": (DETECTION, N_("Incident opened")),
    "detection.finance_report": (DETECTION, N_("Finance's report")),
    "communication.pagerduty": (DETECTION, N_("PagerDuty alert")),
    "investigation.scope": (INVESTIGATION, N_("Validate Scope")),
    "investigation.snapshot": (INVESTIGATION, N_("Database snapshot")),
    "investigation.task_logs": (INVESTIGATION, N_("Check Jobs")),
    "investigation.finance_findings": (INVESTIGATION, N_("Dry-run findings (finance's report)")),
    "communication.finance_report_slack": (COMMUNICATION, N_("On-call told on Slack (finance's report)")),
    "containment.pause": (CONTAINMENT, N_("Automatic reconciliation paused")),
    "incident.eta_resumption": (CONTAINMENT, N_("Resumption estimate")),
    "communication.containment_notice": (CONTAINMENT, N_("Freeze notice to finance")),
    "mitigation.reprocess": (MITIGATION, N_("Reprocessing")),
    "mitigation.rollback": (MITIGATION, N_("Deploy Rollback")),
    "mitigation.psp_ticket": (MITIGATION, N_("Synchronization with PSP (ticket)")),
    "mitigation.data_correction": (DATA_CORRECTION, N_("Data Correction")),
    "incident.psp_ticket": (COMMUNICATION, N_("PSP ticket recorded")),
    "communication.update": (COMMUNICATION, N_("Summary to finance")),
    "communication.normalized": (COMMUNICATION, N_("Final summary to finance")),
    "communication.update_missed": (COMMUNICATION, N_("Summary to finance not sent")),
    "recovery.criteria": (RECOVERY, N_("Recovery Criteria")),
    "closure.resume": (CLOSURE, N_("Automatic reconciliation resumed")),
    "closure.tag_release": (CLOSURE, N_("Release tag")),
    "incident.closing_report": (CLOSURE, N_("Closing report attached")),
    "closure.finance_review": (CLOSURE, N_("Review with finance scheduled")),
}

#: steps not in :data:`STEPS` go under the heading of their prefix
_PREFIXES: Mapping[str, str] = {
    "detection.": DETECTION,
    "investigation.": INVESTIGATION,
    "containment.": CONTAINMENT,
    "mitigation.": MITIGATION,
    "communication.": COMMUNICATION,
    "recovery.": RECOVERY,
    "closure.": CLOSURE,
}

#: an incident state, as people read it
STATE_NAMES: Mapping[str, str] = {
    "open": N_("open"),
    "mitigating": N_("mitigating"),
    "recovered": N_("recovered"),
    "closed": N_("closed"),
}

#: a state change belongs to the heading of the state it reaches
_STATE_SECTIONS: Mapping[str, str] = {
    "open": DETECTION,
    "mitigating": MITIGATION,
    "recovered": RECOVERY,
    "closed": CLOSURE,
}

STATE_STEP = "incident.state"


def section_title(section: str) -> str:
    """A heading (one of :data:`SECTIONS`) in the language in force: ``Ações de Contenção``."""
    return _(section)


def state_name(state: Any) -> str:
    """An incident state in the language in force (``aberto``); unknown states as they are."""
    text = str(getattr(state, "value", state) or "")
    return _(STATE_NAMES[text]) if text in STATE_NAMES else (text or "?")


def step_section(step: str, details: Mapping[str, Any] | None = None) -> str:
    """The runbook heading (message id) a step belongs to; a state change goes under the
    heading of the state it reaches."""
    if step == STATE_STEP:
        return _STATE_SECTIONS.get(str((details or {}).get("to", "")), DETECTION)
    if step in STEPS:
        return STEPS[step][0]
    for prefix, section in _PREFIXES.items():
        if step.startswith(prefix):
            return section
    return OTHER


def step_name(step: str, details: Mapping[str, Any] | None = None) -> str:
    """What people read for a step id, in the language in force: ``Validar Escopo`` for
    ``investigation.scope``; ``Estado: aberto → em mitigação`` for a state change. A step
    this table does not know keeps its id (never hidden)."""
    if step == STATE_STEP:
        details = details or {}
        return _(
            "State: %(before)s → %(after)s",
            before=state_name(details.get("from")),
            after=state_name(details.get("to")),
        )
    if step in STEPS:
        return _(STEPS[step][1])
    return step


def step_title(step: str, details: Mapping[str, Any] | None = None) -> str:
    """Heading and name together, for one-line surfaces (Slack, plain-text e-mail):
    ``Investigação — Validar Escopo``; the name alone when it is the heading itself."""
    section = section_title(step_section(step, details))
    name = step_name(step, details)
    return name if name == section else f"{section} — {name}"


__all__ = [
    "SECTIONS",
    "STATE_NAMES",
    "STEPS",
    "section_title",
    "state_name",
    "step_name",
    "step_section",
    "step_title",
]
