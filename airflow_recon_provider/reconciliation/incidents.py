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
markdown versions never say different things. Amounts are ``int`` minor units, formatted
with :func:`report.format_minor`; the divergence % comes from :func:`report.divergence_pct`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.reconciliation.errors import ReconError
from airflow_recon_provider.reconciliation.report import divergence_pct, format_minor

if TYPE_CHECKING:
    from airflow_recon_provider.reconciliation.report import DivergenceSummary
    from airflow_recon_provider.reconciliation.window import Window

#: finance's mailbox in the runbook (Comunicação); a site configures its own
FINANCE_RECIPIENTS_DEFAULT = "finance@platform.io"
#: the runbook's cadence: "a cada 30 minutos até normalização"
UPDATE_CADENCE = timedelta(minutes=30)
#: the identifiers the remediation DAG's form accepts (``INCIDENT-472``); at most 18 digits
#: so the number always fits the bigint sequence that generates them
INCIDENT_ID_RE = re.compile(r"INCIDENT-([0-9]{1,18})")
INCIDENT_ID_PATTERN = r"^INCIDENT-\d+$"


# -- errors -------------------------------------------------------------------------------


class IncidentError(ReconError):
    """Base class of the incident record's errors."""


class IncidentIdError(IncidentError):
    """An incident id is not of the form ``INCIDENT-<number>``."""


class IncidentNotFoundError(IncidentError):
    """No incident has this id."""


class IncidentAlreadyOpenError(IncidentError):
    """The PSP already has an incident that is not closed (one open incident per PSP).

    :param open_incident_id: the incident that is open.
    """

    def __init__(self, message: str, *, open_incident_id: str) -> None:
        super().__init__(message)
        self.open_incident_id = open_incident_id


class IncidentExistsError(IncidentError):
    """An incident with this id already exists."""


class IllegalTransitionError(IncidentError):
    """The incident cannot move from its state to the requested one."""


class IncidentStateError(IncidentError):
    """A state name that is not one of the incident states."""


class IncidentInputError(IncidentError):
    """A field of an incident, event or notice is missing or malformed."""


# -- states -------------------------------------------------------------------------------


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


def _int(value: Any, *, what: str) -> int:
    # a float never touches an amount; bool is an int subclass and never an amount either
    if isinstance(value, bool) or not isinstance(value, int):
        raise IncidentInputError(f"{what} must be an integer, got {value!r}")
    return value


@dataclass(frozen=True)
class Figures:
    """Divergence figures at one moment: divergent amount (minor units) and keys, and the
    gateway amount they are a share of (``None`` when not known, e.g. read back from an
    event). ``divergence_pct`` is derived from the integers when the gateway amount is known.
    """

    divergent_amount_minor: int
    divergent_count: int
    gateway_amount_minor: int | None = None
    divergence_pct: float | None = None

    def __post_init__(self) -> None:
        _int(self.divergent_amount_minor, what="divergent amount")
        _int(self.divergent_count, what="divergent count")
        if self.gateway_amount_minor is not None:
            _int(self.gateway_amount_minor, what="gateway amount")
            if self.divergence_pct is None:
                object.__setattr__(
                    self,
                    "divergence_pct",
                    divergence_pct(self.divergent_amount_minor, self.gateway_amount_minor),
                )
        if isinstance(self.divergence_pct, Decimal):
            object.__setattr__(self, "divergence_pct", float(self.divergence_pct))

    @classmethod
    def from_summary(cls, summary: DivergenceSummary) -> Figures:
        return cls(
            divergent_amount_minor=summary.divergent_amount_minor,
            divergent_count=summary.divergent_count,
            gateway_amount_minor=summary.gateway_amount_minor,
        )

    @classmethod
    def coerce(cls, value: Figures | DivergenceSummary | Mapping[str, Any] | None) -> Figures | None:
        if value is None or isinstance(value, Figures):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        if hasattr(value, "divergent_amount_minor") and hasattr(value, "gateway_amount_minor"):
            return cls.from_summary(value)
        raise IncidentInputError(f"figures must be Figures or a divergence summary, got {value!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Figures:
        pct = data.get("divergence_pct")
        return cls(
            divergent_amount_minor=data["divergent_amount_minor"],
            divergent_count=data["divergent_count"],
            gateway_amount_minor=data.get("gateway_amount_minor"),
            divergence_pct=None if pct is None else float(pct),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "divergent_amount_minor": self.divergent_amount_minor,
            "divergent_count": self.divergent_count,
            "gateway_amount_minor": self.gateway_amount_minor,
            "divergence_pct": self.divergence_pct,
        }

    @property
    def pct_text(self) -> str:
        return "n/a" if self.divergence_pct is None else f"{self.divergence_pct:.4f}%"

    def describe(self) -> str:
        """``1.2345% — 12,345.67 divergent in 15 transaction(s) of 1,000,000.00``."""
        text = (
            f"{self.pct_text} — {format_minor(self.divergent_amount_minor)} divergent in "
            f"{self.divergent_count:,} transaction(s)"
        )
        if self.gateway_amount_minor is not None:
            text += f" of {format_minor(self.gateway_amount_minor)} processed by the gateway"
        return text

    def short(self) -> str:
        return f"{self.pct_text} ({format_minor(self.divergent_amount_minor)})"


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

_STEP_LABELS = {
    Step.OPENED: "Incident opened",
    Step.STATE: "State changed",
    Step.PSP_TICKET: "PSP ticket recorded",
    Step.ETA: "Resumption estimate",
    Step.CLOSING_REPORT: "Closing report attached",
    Step.UPDATE: "Finance update",
    Step.NORMALIZED: "Final finance update",
    Step.UPDATE_MISSED: "Finance update missed",
    Step.CONTAINMENT_NOTICE: "Containment notice to finance",
}


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
        return _STEP_LABELS.get(self.step, self.step)


@dataclass(frozen=True)
class CorrectionRecord:
    """One row of ``recon.corrections``: a corrected transaction and who approved it."""

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


# -- message content ---------------------------------------------------------------------------


class MessageKind(StrEnum):
    UPDATE = "update"
    NORMALIZED = "normalized"
    CONTAINMENT = "containment"
    CLOSING_REPORT = "closing_report"
    #: a PSP's reconciliation paused or resumed (incidents channel)
    CONTROL = "control"


@dataclass(frozen=True)
class IncidentUpdate:
    """What one finance update says (runbook, Comunicação).

    :param incident: the incident as it is now (state, ticket, ETA of resumption).
    :param as_of: the moment of the update (the 30-minute slot).
    :param figures: divergence now, over the incident's window; ``None`` if unknown.
    :param steps: runbook steps executed since the last update delivered on this channel.
    :param previous_figures: the figures of that last delivered update.
    :param since: the moment of that last delivered update (``None``: first update).
    :param missed: moments of updates that were due but not delivered; their content is in
        this one (steps since the last *delivered* update).
    :param figures_note: why the figures are not fresh, when they are not.
    :param headline: a first line chosen by the sender (e.g. a callback's "reprocess failed").
    :param cadence: time to the next update; ``None`` when no further update is scheduled.
    """

    incident: Incident
    as_of: datetime
    figures: Figures | None
    steps: tuple[IncidentEvent, ...] = ()
    previous_figures: Figures | None = None
    since: datetime | None = None
    missed: tuple[datetime, ...] = ()
    figures_note: str = ""
    headline: str = ""
    cadence: timedelta | None = UPDATE_CADENCE

    @property
    def kind(self) -> MessageKind:
        return MessageKind.NORMALIZED if self.incident.normalized else MessageKind.UPDATE


@dataclass(frozen=True)
class ContainmentNotice:
    """Finance is told that reconciliation of a PSP is frozen, and until when (runbook,
    Ações de Contenção, second bullet).

    :param psp: the PSP whose automatic reconciliation is paused.
    :param paused_at: when it was paused.
    :param paused_by: who paused it.
    :param reason: why.
    :param eta_resumption: estimated resumption; ``None`` when not yet estimated.
    :param incident_id: the incident the pause belongs to, if any.
    :param figures: divergence at the moment of the pause, if known.
    :param psp_ticket: the PSP's ticket, if one is open.
    """

    psp: str
    paused_at: datetime
    paused_by: str
    reason: str
    eta_resumption: datetime | None = None
    incident_id: str | None = None
    figures: Figures | None = None
    psp_ticket: str | None = None


@dataclass(frozen=True)
class RenderedMessage:
    """One message in every form it is sent in."""

    kind: MessageKind
    subject: str
    text: str
    html: str
    slack_text: str
    slack_blocks: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ClosingReport:
    """Everything the closing report says (runbook, Encerramento)."""

    incident: Incident
    events: tuple[IncidentEvent, ...]
    corrections: tuple[CorrectionRecord, ...]
    final_figures: Figures | None
    generated_at: datetime
    final_figures_note: str = ""
    #: channel -> status -> number of deliveries (recon.notifications)
    deliveries: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


# -- formatting helpers ------------------------------------------------------------------------


def format_time(moment: datetime | None, *, date: bool = True) -> str:
    if moment is None:
        return "-"
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC" if date else "%H:%M UTC")


def format_window(window: Window | None) -> str:
    if window is None:
        return "not recorded"
    return f"{format_time(window.start)} to {format_time(window.end)}"


def format_duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days}d"] if days else []
    if hours or days:
        parts.append(f"{hours}h")
    parts.append(f"{minutes:02d}min" if parts else f"{minutes}min")
    return " ".join(parts)


def _change(now: Figures, before: Figures, *, then: str = "the previous update") -> str:
    delta = now.divergent_amount_minor - before.divergent_amount_minor
    if delta == 0:
        return f"unchanged since {then} ({before.short()})"
    direction = "up" if delta > 0 else "down"
    sign = "+" if delta > 0 else ""
    return f"{direction} from {before.short()} at {then} ({sign}{format_minor(delta)})"


# -- a small document model: one content, three renderings ---------------------------------


@dataclass(frozen=True)
class _Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class _Para:
    text: str
    strong: bool = False


@dataclass(frozen=True)
class _Fields:
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    right: frozenset[int] = frozenset()


@dataclass(frozen=True)
class _Items:
    items: tuple[str, ...]


_Block = _Heading | _Para | _Fields | _Table | _Items


def _cell_md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _to_markdown(blocks: Sequence[_Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, _Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, _Para):
            out.append(f"**{block.text}**" if block.strong else block.text)
        elif isinstance(block, _Fields):
            lines = ["| | |", "|---|---|"]
            lines += [f"| {_cell_md(k)} | {_cell_md(v)} |" for k, v in block.pairs]
            out.append("\n".join(lines))
        elif isinstance(block, _Table):
            sep = ["---:" if i in block.right else "---" for i in range(len(block.headers))]
            lines = [
                "| " + " | ".join(_cell_md(h) for h in block.headers) + " |",
                "| " + " | ".join(sep) + " |",
            ]
            lines += ["| " + " | ".join(_cell_md(c) for c in row) + " |" for row in block.rows]
            out.append("\n".join(lines))
        elif isinstance(block, _Items):
            out.append("\n".join(f"- {item}" for item in block.items))
    return "\n\n".join(out) + "\n"


#: plain-text tables wider than this become one line per row
_TEXT_WIDTH = 100


def _text_item(headers: Sequence[str], row: Sequence[str]) -> str:
    """``- 11:12 UTC  reprocess: 3 cycles re-run (by alice; divergence then 1.0000% (9.00))``"""
    first = f"- {row[0]}  {row[1]}: {row[2]}"
    rest = [f"{h} {c}" for h, c in zip(headers[3:], row[3:], strict=True) if c and c != "-"]
    return first + (f" ({'; '.join(rest)})" if rest else "")


def _text_row(cells: Sequence[str], widths: Sequence[int], right: frozenset[int] = frozenset()) -> str:
    return "  ".join(
        c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
    ).rstrip()


def _to_text(blocks: Sequence[_Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, _Heading):
            underline = "=" if block.level <= 1 else "-"
            out.append(f"{block.text}\n{underline * min(len(block.text), 78)}")
        elif isinstance(block, _Para):
            out.append(block.text.upper() if block.strong and len(block.text) < 80 else block.text)
        elif isinstance(block, _Fields):
            width = max((len(k) for k, _ in block.pairs), default=0)
            out.append("\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in block.pairs))
        elif isinstance(block, _Table):
            widths = [
                max([len(h)] + [len(row[i]) for row in block.rows]) for i, h in enumerate(block.headers)
            ]
            if sum(widths) + 2 * len(widths) > _TEXT_WIDTH and len(widths) >= 3:
                # too wide for a plain-text mail: one line per row, wrapped by the reader's client
                rows = [_text_item(block.headers, row) for row in block.rows]
            else:
                rows = [_text_row(block.headers, widths, block.right)]
                rows.append(_text_row(["-" * w for w in widths], widths))
                rows += [_text_row(row, widths, block.right) for row in block.rows]
            out.append("\n".join(rows))
        elif isinstance(block, _Items):
            out.append("\n".join(f"- {item}" for item in block.items))
    return "\n\n".join(out) + "\n"


# inline styles: many mail clients drop a <style> element
_BODY = 'style="font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#1f2328"'
_TABLE = 'style="border-collapse:collapse;margin:8px 0"'
_CELL = "border:1px solid #d0d7de;padding:4px 8px;vertical-align:top;"
_TH = f'style="{_CELL}text-align:left;background:#f6f8fa"'
_TD = f'style="{_CELL}text-align:left"'
_TD_NUM = f'style="{_CELL}text-align:right;white-space:nowrap"'


def _to_html(blocks: Sequence[_Block], *, title: str) -> str:
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title></head><body {_BODY}>",
    ]
    for block in blocks:
        if isinstance(block, _Heading):
            level = max(1, min(block.level, 4))
            out.append(f"<h{level}>{esc(block.text)}</h{level}>")
        elif isinstance(block, _Para):
            text = esc(block.text)
            out.append(f"<p><strong>{text}</strong></p>" if block.strong else f"<p>{text}</p>")
        elif isinstance(block, _Fields):
            rows = "".join(f"<tr><th {_TH}>{esc(k)}</th><td {_TD}>{esc(v)}</td></tr>" for k, v in block.pairs)
            out.append(f"<table {_TABLE}>{rows}</table>")
        elif isinstance(block, _Table):
            head = "".join(f"<th {_TH}>{esc(h)}</th>" for h in block.headers)
            body = "".join(
                "<tr>"
                + "".join(
                    f"<td {_TD_NUM if i in block.right else _TD}>{esc(c)}</td>" for i, c in enumerate(row)
                )
                + "</tr>"
                for row in block.rows
            )
            out.append(f"<table {_TABLE}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, _Items):
            out.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in block.items) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# -- Slack ------------------------------------------------------------------------------------

#: Slack limits: a section's text is at most 3000 characters, a header's 150, 10 fields
_SLACK_SECTION_MAX = 2900


def _slack_escape(text: str) -> str:
    # the only three characters Slack's mrkdwn requires escaped
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_blocks(title: str, fields: Sequence[tuple[str, str]], sections: Sequence[str], footer: str):
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": False}}
    ]
    for start in range(0, len(fields), 10):
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{_slack_escape(k)}*\n{_slack_escape(v)}"[:2000]}
                    for k, v in fields[start : start + 10]
                ],
            }
        )
    for text in sections:
        if len(text) > _SLACK_SECTION_MAX:
            text = text[: _SLACK_SECTION_MAX - 40] + "\n… (truncated; full text in the e-mail)"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(footer)}]})
    return tuple(blocks)


# -- the update -------------------------------------------------------------------------------


def _step_row(event: IncidentEvent) -> tuple[str, ...]:
    return (
        format_time(event.created_at),
        event.label,
        event.outcome,
        event.actor,
        event.figures.short() if event.figures is not None else "-",
    )


_STEP_HEADERS = ("when", "step", "outcome", "by", "divergence then")


def _update_fields(update: IncidentUpdate) -> list[tuple[str, str]]:
    incident = update.incident
    now = update.figures
    fields = [
        ("Incident", incident.incident_id),
        ("PSP", incident.psp),
        ("State", incident.state.value),
        ("As of", format_time(update.as_of)),
        ("Affected window", format_window(incident.window)),
        (
            "Divergence now",
            (now.describe() if now is not None else "not available")
            + (f" ({update.figures_note})" if update.figures_note else ""),
        ),
    ]
    if now is not None and update.previous_figures is not None:
        fields.append(("Change", _change(now, update.previous_figures)))
    if incident.normalized:
        fields.append(("Normalized at", format_time(incident.recovered_at or incident.closed_at)))
        fields.append(
            ("Reconciliation", "normalized; automatic reconciliation resumes (runbook Encerramento)")
        )
    else:
        fields.append(
            (
                "Estimated resumption",
                format_time(incident.eta_resumption) if incident.eta_resumption else "not yet estimated",
            )
        )
    fields.append(("PSP ticket", incident.psp_ticket or "none opened"))
    return fields


def _update_document(update: IncidentUpdate) -> tuple[str, list[_Block], list[tuple[str, str]], str]:
    incident = update.incident
    normalized = update.kind is MessageKind.NORMALIZED
    title = (
        f"{incident.incident_id} · PSP {incident.psp} · reconciliation normalized"
        if normalized
        else f"{incident.incident_id} · PSP {incident.psp} · reconciliation incident update"
    )
    fields = _update_fields(update)
    blocks: list[_Block] = [_Heading(title, 1)]
    if update.headline:
        blocks.append(_Para(update.headline, strong=True))
    if normalized:
        blocks.append(
            _Para(
                f"Reconciliation of {incident.psp} is normalized: this is the last update about "
                f"{incident.incident_id}. The closing report and a review with finance follow."
            )
        )
    blocks.append(_Fields(tuple(fields)))
    since = (
        f"since the last update ({format_time(update.since)})"
        if update.since is not None
        else "since the incident was opened"
    )
    blocks.append(_Heading(f"Steps executed {since}"))
    if update.steps:
        blocks.append(_Table(_STEP_HEADERS, tuple(_step_row(e) for e in update.steps)))
    else:
        blocks.append(_Para("No new steps since the last update."))
    if update.missed:
        blocks.append(
            _Para(
                "Updates due at "
                + ", ".join(format_time(m) for m in update.missed)
                + " were not delivered; everything since the last delivered update is included here."
            )
        )
    if normalized or update.cadence is None:
        footer = "Runbook: Billing Gateway — Falhas de Reconciliação (Comunicação)."
    else:
        minutes = int(update.cadence.total_seconds() // 60)
        footer = (
            f"Next update in {minutes} minutes, until reconciliation is normalized. "
            "Runbook: Billing Gateway — Falhas de Reconciliação (Comunicação)."
        )
    blocks.append(_Para(footer))
    return title, blocks, fields, footer


def update_subject(update: IncidentUpdate) -> str:
    incident = update.incident
    figures = update.figures.short() if update.figures is not None else "figures unavailable"
    if update.kind is MessageKind.NORMALIZED:
        return f"[{incident.incident_id}] {incident.psp} reconciliation normalized - {figures} divergent"
    return (
        f"[{incident.incident_id}] {incident.psp} reconciliation update "
        f"{format_time(update.as_of)} - {figures} divergent"
    )


def render_update(update: IncidentUpdate) -> RenderedMessage:
    """The update as e-mail (text and HTML) and as a Slack message."""
    title, blocks, fields, footer = _update_document(update)
    subject = update_subject(update)
    if update.steps:
        steps = "\n".join(
            f"• {format_time(e.created_at, date=False)} *{_slack_escape(e.label)}* — "
            f"{_slack_escape(e.outcome)} ({_slack_escape(e.actor)})"
            + (f", {e.figures.short()}" if e.figures else "")
            for e in update.steps
        )
    else:
        steps = "No new steps since the last update."
    since = format_time(update.since) if update.since else "the incident was opened"
    sections = [(f"*{_slack_escape(update.headline)}*" if update.headline else "")]
    sections.append(f"*Steps since {since}*\n{steps}")
    if update.missed:
        sections.append(
            "_Updates due at "
            + ", ".join(format_time(m) for m in update.missed)
            + " were not delivered; their content is included here._"
        )
    return RenderedMessage(
        kind=update.kind,
        subject=subject,
        text=_to_text(blocks),
        html=_to_html(blocks, title=subject),
        slack_text=subject,
        slack_blocks=_slack_blocks(title, fields, [s for s in sections if s], footer),
    )


# -- the containment notice ----------------------------------------------------------------------


def containment_subject(notice: ContainmentNotice) -> str:
    prefix = f"[{notice.incident_id}]" if notice.incident_id else "[billing gateway]"
    eta = format_time(notice.eta_resumption) if notice.eta_resumption else "not yet estimated"
    return f"{prefix} {notice.psp} reconciliation paused - estimated resumption {eta}"


def render_containment(notice: ContainmentNotice) -> RenderedMessage:
    """Finance is told of the freeze and of the estimated resumption."""
    title = f"PSP {notice.psp} · automatic reconciliation paused"
    eta = format_time(notice.eta_resumption) if notice.eta_resumption else "not yet estimated"
    fields = [
        ("PSP", notice.psp),
        ("Paused at", format_time(notice.paused_at)),
        ("Paused by", notice.paused_by),
        ("Reason", notice.reason),
        ("Estimated resumption", eta),
        ("Incident", notice.incident_id or "none"),
        ("Divergence at the pause", notice.figures.describe() if notice.figures else "not available"),
        ("PSP ticket", notice.psp_ticket or "none opened"),
    ]
    explanation = (
        f"Automatic reconciliation of {notice.psp} is frozen while the divergence is contained "
        "(runbook: Ações de Contenção). Reports of this PSP may show the divergence until "
        "reconciliation resumes; corrections are applied only with finance's approval."
    )
    footer = "Runbook: Billing Gateway — Falhas de Reconciliação (Ações de Contenção)."
    blocks: list[_Block] = [_Heading(title, 1), _Para(explanation), _Fields(tuple(fields)), _Para(footer)]
    subject = containment_subject(notice)
    return RenderedMessage(
        kind=MessageKind.CONTAINMENT,
        subject=subject,
        text=_to_text(blocks),
        html=_to_html(blocks, title=subject),
        slack_text=subject,
        slack_blocks=_slack_blocks(title, fields, [_slack_escape(explanation)], footer),
    )


# -- the closing report ---------------------------------------------------------------------------

#: at most this many corrected transactions are listed one by one (all are counted)
CORRECTIONS_LISTED = 200


def _opening_event(events: Iterable[IncidentEvent]) -> IncidentEvent | None:
    return next((e for e in events if e.step == Step.OPENED), None)


def _closing_document(report: ClosingReport) -> tuple[str, list[_Block]]:
    incident = report.incident
    events = list(report.events)
    title = f"{incident.incident_id} — billing gateway reconciliation, PSP {incident.psp}"
    blocks: list[_Block] = [_Heading(title, 1)]
    if incident.state is not IncidentState.CLOSED:
        blocks.append(_Para(f"Draft: the incident is still {incident.state.value}.", strong=True))
    end = incident.closed_at or report.generated_at
    summary = [
        ("PSP", incident.psp),
        ("State", incident.state.value),
        ("Affected window", format_window(incident.window)),
        ("Opened", f"{format_time(incident.opened_at)} by {incident.opened_by}"),
        ("Reason", incident.reason or "-"),
        ("Recovered", format_time(incident.recovered_at)),
        ("Closed", format_time(incident.closed_at)),
        ("Duration", format_duration(end - incident.opened_at)),
        ("PSP ticket", incident.psp_ticket or "none"),
        ("Report generated", format_time(report.generated_at)),
    ]
    blocks.append(_Fields(tuple(summary)))

    # what diverged, and when
    blocks.append(_Heading("What diverged"))
    opened = _opening_event(events)
    with_figures = [e for e in events if e.figures is not None]
    first = opened if opened is not None and opened.figures is not None else next(iter(with_figures), None)
    if first is not None and first.figures is not None:
        blocks.append(_Para(f"At {format_time(first.created_at)}: {first.figures.describe()}."))
    else:
        blocks.append(_Para("No divergence figures were recorded when the incident was opened."))
    if with_figures:
        peak = max(with_figures, key=lambda e: (e.figures.divergent_amount_minor, -e.id))  # type: ignore[union-attr]
        blocks.append(_Para(f"Peak: {peak.figures.describe()} at {format_time(peak.created_at)}."))  # type: ignore[union-attr]
    by_kind = (opened.details.get("by_kind") if opened is not None else None) or {}
    if by_kind:
        blocks.append(
            _Table(
                ("divergence kind", "keys", "divergent amount"),
                tuple(
                    (kind, f"{int(v.get('count', 0)):,}", format_minor(int(v.get("amount_minor", 0))))
                    for kind, v in by_kind.items()
                ),
                right=frozenset({1, 2}),
            )
        )

    # what was done
    blocks.append(_Heading("What was done"))
    steps = [e for e in events if not e.is_communication]
    if steps:
        blocks.append(
            _Table(
                ("when", "step", "outcome", "by", "run", "divergence then"),
                tuple(
                    (
                        format_time(e.created_at),
                        e.label,
                        e.outcome,
                        e.actor,
                        e.run_id or "-",
                        e.figures.short() if e.figures else "-",
                    )
                    for e in steps
                ),
            )
        )
    else:
        blocks.append(_Para("No step was recorded."))

    # who approved what
    blocks.append(_Heading("Who approved what"))
    if report.corrections:
        groups: dict[tuple[str, str, str], list[CorrectionRecord]] = {}
        for c in report.corrections:
            groups.setdefault((c.requested_by, c.approved_by, c.run_id), []).append(c)
        blocks.append(
            _Table(
                ("requested by", "approved by", "run", "transactions", "amount", "kinds"),
                tuple(
                    (
                        req,
                        appr,
                        run,
                        f"{len(items):,}",
                        format_minor(sum(c.amount_minor for c in items)),
                        ", ".join(sorted({c.kind for c in items})),
                    )
                    for (req, appr, run), items in groups.items()
                ),
                right=frozenset({3, 4}),
            )
        )
        listed = report.corrections[:CORRECTIONS_LISTED]
        blocks.append(
            _Table(
                ("applied", "transaction", "reference", "type", "kind", "amount", "approved by"),
                tuple(
                    (
                        format_time(c.applied_at),
                        str(c.transaction_id),
                        c.provider_reference,
                        c.transaction_type,
                        c.kind,
                        format_minor(c.amount_minor),
                        c.approved_by,
                    )
                    for c in listed
                ),
                right=frozenset({1, 5}),
            )
        )
        if len(report.corrections) > len(listed):
            blocks.append(
                _Para(
                    f"… and {len(report.corrections) - len(listed):,} more corrected transactions "
                    "(recon.corrections)."
                )
            )
    else:
        blocks.append(_Para("No transaction was corrected."))
    approvals = [e for e in steps if e.details.get("approved_by")]
    if approvals:
        blocks.append(
            _Items(
                tuple(
                    f"{format_time(e.created_at)}: {e.label} approved by {e.details['approved_by']}"
                    + (
                        f" (requested by {e.details['requested_by']})"
                        if e.details.get("requested_by")
                        else ""
                    )
                    for e in approvals
                )
            )
        )

    # communication
    blocks.append(_Heading("Communication with finance"))
    sent = {ch: dict(stats) for ch, stats in report.deliveries.items()}
    lines = [
        f"{channel}: " + ", ".join(f"{n} {status}" for status, n in sorted(stats.items()))
        for channel, stats in sorted(sent.items())
    ]
    missed = [e for e in events if e.step == Step.UPDATE_MISSED]
    lines += [f"{format_time(e.created_at)}: {e.outcome}" for e in missed]
    blocks.append(_Items(tuple(lines)) if lines else _Para("No message was sent."))

    # final numbers
    blocks.append(_Heading("Final numbers"))
    if report.final_figures is not None:
        note = f" ({report.final_figures_note})" if report.final_figures_note else ""
        blocks.append(_Para(f"{report.final_figures.describe()}{note}."))
        if first is not None and first.figures is not None:
            blocks.append(
                _Para(
                    "Compared with the opening: "
                    + _change(report.final_figures, first.figures, then="the opening")
                    + "."
                )
            )
    else:
        blocks.append(_Para("Final figures are not available."))

    blocks.append(_Heading("Lessons learned"))
    blocks.append(
        _Items(
            (
                "Root cause: (to be completed at the review)",
                "Definitive corrections confirmed with finance: review to be scheduled "
                "(runbook Encerramento)",
                "Follow-up actions: (owner, due date)",
            )
        )
    )
    return title, blocks


def render_closing_report_markdown(report: ClosingReport) -> str:
    _, blocks = _closing_document(report)
    return _to_markdown(blocks)


def render_closing_report_html(report: ClosingReport) -> str:
    title, blocks = _closing_document(report)
    return _to_html(blocks, title=title)


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
    "ClosingReport",
    "ContainmentNotice",
    "CorrectionRecord",
    "Figures",
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
    "IncidentUpdate",
    "MessageKind",
    "RenderedMessage",
    "Step",
    "check_incident_id",
    "check_transition",
    "containment_subject",
    "format_incident_id",
    "format_time",
    "incident_number",
    "missed_slots",
    "parse_state",
    "render_closing_report_html",
    "render_closing_report_markdown",
    "render_containment",
    "render_update",
    "update_subject",
]
