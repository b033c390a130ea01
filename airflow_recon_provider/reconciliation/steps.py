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

from airflow_recon_provider.reconciliation.i18n import N_, _, format_number, ngettext

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
    "detection.watch_alert": (DETECTION, N_("Divergence alert on finance's incident")),
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

#: a divergence kind (DESIGN 3), as people read it
KIND_NAMES: Mapping[str, str] = {
    "duplicate_in_gateway": N_("duplicate in the gateway"),
    "duplicate_in_statement": N_("duplicate in the PSP statement"),
    "missing_in_statement": N_("missing from the PSP statement"),
    "missing_in_gateway": N_("missing from the gateway"),
    "currency_mismatch": N_("different currency"),
    "amount_mismatch": N_("different amount"),
    "status_mismatch": N_("different status"),
}

#: a channel of ``recon.notifications`` and a delivery's status, as people read them
CHANNEL_NAMES: Mapping[str, str] = {"email": N_("e-mail"), "slack": N_("Slack")}
DELIVERY_STATUS_NAMES: Mapping[str, str] = {
    "sent": N_("sent"),
    "failed": N_("failed"),
    "pending": N_("pending"),
    "skipped": N_("skipped"),
    "superseded": N_("superseded"),
}

#: a PSP health check's outcome (Investigação 4), as people read it
HEALTH_NAMES: Mapping[str, str] = {
    "healthy": N_("healthy"),
    "degraded": N_("degraded"),
    "down": N_("down"),
    "unknown_status": N_("unknown status"),
    "timeout": N_("no answer in time"),
    "http_error": N_("HTTP error"),
    "connection_refused": N_("connection refused"),
    "unreachable": N_("unreachable"),
    "malformed_json": N_("malformed answer"),
    "probe_error": N_("check failed"),
}
#: what an optional source of the investigation reported when it gave no figures
SOURCE_STATUS_NAMES: Mapping[str, str] = {
    "not configured": N_("not configured"),
    "unavailable": N_("unavailable"),
    "error": N_("error"),
}
#: a decision of the data correction (Mitigação 2) on the timeline, as people read it; the
#: code stays in the event's details (``decision``)
CORRECTION_OUTCOMES: Mapping[str, str] = {
    "dry_run": N_("dry run only: nothing asked, nothing applied"),
    "nothing_to_correct": N_("nothing to correct automatically"),
    "row_cap_exceeded": N_("more transactions than the run's row cap: nobody asked, nothing applied"),
    "approval_requested": N_("approval requested from finance"),
    "approval_refused": N_("approval refused: the answer did not come from an allowed approver"),
    "applied": N_("corrections applied"),
    "rejected": N_("rejected by finance: nothing applied"),
    "timed_out": N_("finance did not answer in time: nothing applied"),
}


def _word(table: Mapping[str, str], value: Any) -> str:
    text = str(getattr(value, "value", value) or "")
    return _(table[text]) if text in table else (text or "?")


def kind_name(kind: Any) -> str:
    """A divergence kind in the language in force (``status divergente``); unknown kinds as
    they are."""
    return _word(KIND_NAMES, kind)


def correction_outcome(outcome: Any) -> str:
    """A data-correction decision in words (``aprovação solicitada ao financeiro``); unknown
    codes as they are."""
    return _word(CORRECTION_OUTCOMES, outcome)


def health_name(outcome: Any) -> str:
    """A PSP health outcome in words (``saudável``, ``sem resposta a tempo``); unknown ones as
    they are."""
    return _word(HEALTH_NAMES, outcome)


def source_status_name(status: Any) -> str:
    """``não configurado``, ``indisponível``; other statuses as they are."""
    return _word(SOURCE_STATUS_NAMES, status)


def _cycle_count(status: str, count: int) -> str:
    if status == "failed":
        return ngettext("%(num)s failed", "%(num)s failed", count)
    if status == "success":
        return ngettext("%(num)s successful", "%(num)s successful", count)
    if status == "running":
        return ngettext("%(num)s running", "%(num)s running", count)
    return f"{format_number(count)} {status}"


def cycle_counts(by_status: Mapping[str, int]) -> str:
    """``2 com falha, 1 com sucesso`` from ``{"failed": 2, "success": 1}`` (failed first:
    what on-call looks for); statuses this function does not know as ``<n> <status>``."""
    order = {"failed": 0, "running": 1, "success": 2}
    ranked = sorted(by_status.items(), key=lambda item: (order.get(item[0], 3), item[0]))
    return ", ".join(_cycle_count(status, int(count)) for status, count in ranked)


def channel_name(channel: Any) -> str:
    """``e-mail``, ``Slack``; unknown channels as they are."""
    return _word(CHANNEL_NAMES, channel)


def delivery_status_name(status: Any) -> str:
    """``enviado``, ``falhou`` ...; unknown statuses as they are."""
    return _word(DELIVERY_STATUS_NAMES, status)


def section_title(section: str) -> str:
    """A heading (one of :data:`SECTIONS`) in the language in force: ``Ações de Contenção``."""
    return _(section)


def state_name(state: Any) -> str:
    """An incident state in the language in force (``aberto``); unknown states as they are."""
    return _word(STATE_NAMES, state)


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
    heading = step_section(step, details)
    name = step_name(step, details)
    if heading == OTHER:
        return name
    section = section_title(heading)
    return name if name == section else f"{section} — {name}"


__all__ = [
    "CHANNEL_NAMES",
    "CORRECTION_OUTCOMES",
    "DELIVERY_STATUS_NAMES",
    "HEALTH_NAMES",
    "KIND_NAMES",
    "SECTIONS",
    "SOURCE_STATUS_NAMES",
    "STATE_NAMES",
    "STEPS",
    "channel_name",
    "correction_outcome",
    "cycle_counts",
    "delivery_status_name",
    "health_name",
    "kind_name",
    "section_title",
    "source_status_name",
    "state_name",
    "step_name",
    "step_section",
    "step_title",
]
