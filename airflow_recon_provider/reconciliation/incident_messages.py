"""What people are told about an incident: the update every 30 minutes, the containment
notice, the PSP ticket's text and the closing report — one small document model rendered as
plain text and HTML e-mail, Slack blocks and markdown, so the versions never say different
things (runbook: Comunicação, Ações de Contenção, Encerramento). Pure domain, no Airflow, no
I/O; the incident record itself is :mod:`airflow_recon_provider.reconciliation.incidents`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.reconciliation.i18n import _, current_language, format_number, ngettext
from airflow_recon_provider.reconciliation.recovery import LedgerAlignment, recovery_criteria
from airflow_recon_provider.reconciliation.steps import (
    channel_name,
    delivery_status_name,
    kind_name,
    state_name,
)

if TYPE_CHECKING:
    from airflow_recon_provider.reconciliation.finance_review import FinanceReview

from airflow_recon_provider.reconciliation.figures import Figures, _signed, money_text
from airflow_recon_provider.reconciliation.incidents import (
    UPDATE_CADENCE,
    CorrectionRecord,
    Incident,
    IncidentEvent,
    IncidentState,
    Step,
    format_duration,
    format_time,
    format_window,
)


class MessageKind(StrEnum):
    UPDATE = "update"
    NORMALIZED = "normalized"
    CONTAINMENT = "containment"
    CLOSING_REPORT = "closing_report"
    #: a PSP's reconciliation paused or resumed (incidents channel)
    CONTROL = "control"
    #: finance reported a difference between the ledger and a PSP's statement (incidents
    #: channel; recorded on the incident timeline, not in recon.notifications)
    FINANCE_REPORT = "finance_report"


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
    :param review: the review with finance scheduled at closure (Encerramento 4): the
        closing e-mail says when, and carries its invitation.
    :param recovery: the runbook's three recovery criteria checked now (the recovery
        trigger's check); ``None`` when not checked, ``recovery_note`` then says why.
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
    review: FinanceReview | None = None
    recovery: Mapping[str, Any] | None = None
    recovery_note: str = ""

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


def _change(now: Figures, before: Figures, *, since_opening: bool = False) -> str:
    """How the divergence moved: the converted total's delta (when both are in the same
    reporting currency) and, with several currencies, each currency's delta in its own.
    Compared with the previous update, or (``since_opening``) with the opening."""
    at = _("at the opening") if since_opening else _("at the previous update")
    same = now.reporting_currency is not None and now.reporting_currency == before.reporting_currency
    delta = now.divergent_amount_minor - before.divergent_amount_minor
    per_currency: list[str] = []
    if now.by_currency and before.by_currency and (now.several_currencies or before.several_currencies):
        for code in sorted(set(now.by_currency) | set(before.by_currency)):
            mine = now.by_currency.get(code)
            theirs = before.by_currency.get(code)
            moved = (mine.divergent_amount_minor if mine else 0) - (
                theirs.divergent_amount_minor if theirs else 0
            )
            if moved:
                per_currency.append(_signed(moved, code))
    per_text = _("per currency: %(figures)s", figures="; ".join(per_currency)) if per_currency else ""
    if not same:
        # totals in different (or unrecorded) currencies are not compared
        return _("was %(figures)s %(at)s", figures=before.short(), at=at) + (
            f" ({per_text})" if per_text else ""
        )
    if delta == 0 and not per_currency:
        if since_opening:
            return _("unchanged since the opening (%(figures)s)", figures=before.short())
        return _("unchanged since the previous update (%(figures)s)", figures=before.short())
    signed = _signed(delta, now.reporting_currency)
    if now.converted or before.converted:
        signed = _("%(amount)s converted", amount=signed)
    parts = "; ".join([signed] + ([per_text] if per_text else []))
    if delta > 0:
        return _("up from %(figures)s %(at)s (%(change)s)", figures=before.short(), at=at, change=parts)
    if delta < 0:
        return _("down from %(figures)s %(at)s (%(change)s)", figures=before.short(), at=at, change=parts)
    return _("changed from %(figures)s %(at)s (%(change)s)", figures=before.short(), at=at, change=parts)


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
            width = max((len(pair[0]) for pair in block.pairs), default=0)
            # a value of several lines (one per currency) keeps its lines under the value column
            indent = "\n" + " " * (width + 2)
            out.append(
                "\n".join(f"{k + ':':<{width + 1}} {indent.join(v.splitlines())}" for k, v in block.pairs)
            )
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


#: an http(s) address in a text (the punctuation ending a sentence is taken off it)
_URL_RE = re.compile(r"https?://[^\s<>\"']+")


def _linked(text: str) -> str:
    """``text`` escaped for HTML, each http(s) address in it a link (e-mail clients do not
    all turn plain-text addresses into links: the closing report's must be one)."""
    out, last = [], 0
    for match in _URL_RE.finditer(text):
        address = match.group(0).rstrip(".,;:!?)]")
        if address.endswith("://"):
            continue
        url = html.escape(address)
        out.append(html.escape(text[last : match.start()]))
        out.append(f'<a href="{url}">{url}</a>')
        last = match.start() + len(address)
    out.append(html.escape(text[last:]))
    return "".join(out)


def _to_html(blocks: Sequence[_Block], *, title: str) -> str:
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        f'<html lang="{"pt-BR" if current_language() == "pt_BR" else "en"}"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title></head><body {_BODY}>",
    ]
    for block in blocks:
        if isinstance(block, _Heading):
            level = max(1, min(block.level, 4))
            out.append(f"<h{level}>{esc(block.text)}</h{level}>")
        elif isinstance(block, _Para):
            text = _linked(block.text)
            out.append(f"<p><strong>{text}</strong></p>" if block.strong else f"<p>{text}</p>")
        elif isinstance(block, _Fields):
            # a value of several lines (one per currency) keeps its lines
            rows = "".join(
                f"<tr><th {_TH}>{esc(k)}</th><td {_TD}>{'<br>'.join(map(_linked, v.splitlines()))}</td></tr>"
                for k, v in block.pairs
            )
            out.append(f"<table {_TABLE}>{rows}</table>")
        elif isinstance(block, _Table):
            head = "".join(f"<th {_TH}>{esc(h)}</th>" for h in block.headers)
            body = "".join(
                "<tr>"
                + "".join(
                    f"<td {_TD_NUM if i in block.right else _TD}>{_linked(c)}</td>" for i, c in enumerate(row)
                )
                + "</tr>"
                for row in block.rows
            )
            out.append(f"<table {_TABLE}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, _Items):
            out.append("<ul>" + "".join(f"<li>{_linked(i)}</li>" for i in block.items) + "</ul>")
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
            text = text[: _SLACK_SECTION_MAX - 40] + "\n… " + _("(truncated; full text in the e-mail)")
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


def _step_headers() -> tuple[str, ...]:
    return (_("when"), _("step"), _("outcome"), _("by"), _("divergence then"))


def _update_fields(update: IncidentUpdate) -> list[tuple[str, str]]:
    incident = update.incident
    now = update.figures
    fields = [
        (_("Incident"), incident.incident_id),
        (_("PSP"), incident.psp),
        (_("State"), state_name(incident.state)),
        (_("As of"), format_time(update.as_of)),
        (_("Affected window"), format_window(incident.window)),
    ]
    if now is not None:
        fields += now.fields(_("Divergence now"), update.figures_note)
    else:
        note = f" ({update.figures_note})" if update.figures_note else ""
        fields.append((_("Divergence now"), _("not available") + note))
    if now is not None and update.previous_figures is not None:
        fields.append((_("Change"), _change(now, update.previous_figures)))
    if update.recovery is not None:
        criteria = recovery_criteria(update.recovery)
        fields.append((_("Recovery Criteria"), "\n".join(criterion.text() for criterion in criteria)))
    elif update.recovery_note:
        fields.append((_("Recovery Criteria"), _("not checked (%(why)s)", why=update.recovery_note)))
    if incident.normalized:
        fields.append((_("Normalized at"), format_time(incident.recovered_at or incident.closed_at)))
        fields.append(
            (
                _("Reconciliation"),
                _("normalized; automatic reconciliation resumes (runbook: Closure)"),
            )
        )
    else:
        fields.append(
            (
                _("Estimated resumption"),
                format_time(incident.eta_resumption) if incident.eta_resumption else _("not yet estimated"),
            )
        )
    fields.append((_("PSP ticket"), incident.psp_ticket or _("none opened")))
    return fields


def _update_document(update: IncidentUpdate) -> tuple[str, list[_Block], list[tuple[str, str]], str]:
    incident = update.incident
    normalized = update.kind is MessageKind.NORMALIZED
    title = (
        _(
            "%(incident)s · PSP %(psp)s · reconciliation normalized",
            incident=incident.incident_id,
            psp=incident.psp,
        )
        if normalized
        else _(
            "%(incident)s · PSP %(psp)s · reconciliation incident update",
            incident=incident.incident_id,
            psp=incident.psp,
        )
    )
    fields = _update_fields(update)
    blocks: list[_Block] = [_Heading(title, 1)]
    if update.headline:
        blocks.append(_Para(update.headline, strong=True))
    if normalized:
        blocks.append(
            _Para(
                _(
                    "Reconciliation of %(psp)s is normalized: this is the last update about "
                    "%(incident)s. The closing report and a review with finance follow.",
                    psp=incident.psp,
                    incident=incident.incident_id,
                )
            )
        )
    if update.review is not None:
        # Encerramento 4: the invitation (.ics) is attached to this e-mail
        blocks.append(
            _Para(
                _(
                    "Closure — review with finance scheduled for %(when)s (invitation attached, %(file)s)",
                    when=update.review.when,
                    file=update.review.filename,
                )
                + (
                    "; " + _("closing report: %(link)s", link=update.review.report_link)
                    if update.review.report_link
                    else ""
                )
                + ".",
                strong=True,
            )
        )
    blocks.append(_Fields(tuple(fields)))
    heading = (
        _("Steps executed since the last update (%(when)s)", when=format_time(update.since))
        if update.since is not None
        else _("Steps executed since the incident was opened")
    )
    blocks.append(_Heading(heading))
    if update.steps:
        blocks.append(_Table(_step_headers(), tuple(_step_row(e) for e in update.steps)))
    else:
        blocks.append(_Para(_("No new steps since the last update.")))
    if update.missed:
        blocks.append(
            _Para(
                _(
                    "Updates due at %(moments)s were not delivered; everything since the last "
                    "delivered update is included here.",
                    moments=", ".join(format_time(m) for m in update.missed),
                )
            )
        )
    runbook = _(
        "Runbook: Billing Gateway — Falhas de Reconciliação (%(section)s).", section=_("Communication")
    )
    if normalized or update.cadence is None:
        footer = runbook
    else:
        minutes = int(update.cadence.total_seconds() // 60)
        footer = (
            ngettext(
                "Next update in %(num)s minute, until reconciliation is normalized.",
                "Next update in %(num)s minutes, until reconciliation is normalized.",
                minutes,
            )
            + " "
            + runbook
        )
    blocks.append(_Para(footer))
    return title, blocks, fields, footer


def update_subject(update: IncidentUpdate) -> str:
    incident = update.incident
    if update.figures is None:
        figures = _("figures unavailable")
    else:
        figures = _("%(figures)s divergent", figures=update.figures.short())
    if update.kind is MessageKind.NORMALIZED:
        return _(
            "[%(incident)s] %(psp)s reconciliation normalized - %(figures)s",
            incident=incident.incident_id,
            psp=incident.psp,
            figures=figures,
        )
    return _(
        "[%(incident)s] %(psp)s reconciliation update %(when)s - %(figures)s",
        incident=incident.incident_id,
        psp=incident.psp,
        when=format_time(update.as_of),
        figures=figures,
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
        steps = _("No new steps since the last update.")
    heading = (
        _("Steps since %(when)s", when=format_time(update.since))
        if update.since
        else _("Steps since the incident was opened")
    )
    sections = [(f"*{_slack_escape(update.headline)}*" if update.headline else "")]
    sections.append(f"*{_slack_escape(heading)}*\n{steps}")
    if update.missed:
        sections.append(
            "_"
            + _(
                "Updates due at %(moments)s were not delivered; their content is included here.",
                moments=", ".join(format_time(m) for m in update.missed),
            )
            + "_"
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
    eta = format_time(notice.eta_resumption) if notice.eta_resumption else _("not yet estimated")
    return _(
        "%(prefix)s %(psp)s reconciliation paused - estimated resumption %(eta)s",
        prefix=prefix,
        psp=notice.psp,
        eta=eta,
    )


def render_containment(notice: ContainmentNotice) -> RenderedMessage:
    """Finance is told of the freeze and of the estimated resumption."""
    title = _("PSP %(psp)s · automatic reconciliation paused", psp=notice.psp)
    eta = format_time(notice.eta_resumption) if notice.eta_resumption else _("not yet estimated")
    fields = [
        (_("PSP"), notice.psp),
        (_("Paused at"), format_time(notice.paused_at)),
        (_("Paused by"), notice.paused_by),
        (_("Reason"), notice.reason),
        (_("Estimated resumption"), eta),
        (_("Incident"), notice.incident_id or _("none")),
    ]
    if notice.figures is not None:
        fields += notice.figures.fields(_("Divergence at the pause"))
    else:
        fields.append((_("Divergence at the pause"), _("not available")))
    fields.append((_("PSP ticket"), notice.psp_ticket or _("none opened")))
    explanation = _(
        "Automatic reconciliation of %(psp)s is frozen while the divergence is contained "
        "(runbook: %(section)s). Reports of this PSP may show the divergence until "
        "reconciliation resumes; corrections are applied only with finance's approval.",
        psp=notice.psp,
        section=_("Containment Actions"),
    )
    footer = _(
        "Runbook: Billing Gateway — Falhas de Reconciliação (%(section)s).", section=_("Containment Actions")
    )
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


def _kind_rank(kind: str) -> int:
    from airflow_recon_provider.reconciliation.kinds import DivergenceKind

    try:
        return DivergenceKind(kind).rank
    except ValueError:
        return 1_000


def _kind_blocks(details: Mapping[str, Any]) -> list[_Block]:
    """The per-kind split recorded at the opening: each kind's keys and amount per currency,
    in that currency (``details["by_currency"]``). Openings recorded before that kept only
    ``details["by_kind"]``: shown in the currency recorded with them, if any."""
    rows: list[tuple[str, str, int, int]] = []
    for code, fig in (details.get("by_currency") or {}).items():
        for kind, total in ((fig or {}).get("by_kind") or {}).items():
            count, amount = int(total.get("count", 0)), int(total.get("amount_minor", 0))
            if count or amount:
                rows.append((kind, code, count, amount))
    if rows:
        rows.sort(key=lambda r: (_kind_rank(r[0]), r[1]))
        return [
            _Table(
                (_("divergence kind"), _("currency"), _("keys"), _("divergent amount")),
                tuple(
                    (kind_name(kind), code, format_number(n), money_text(a, code))
                    for kind, code, n, a in rows
                ),
                right=frozenset({2, 3}),
            )
        ]
    by_kind = details.get("by_kind") or {}
    if not by_kind:
        return []
    currency = details.get("reporting_currency")
    return [
        _Table(
            (
                _("divergence kind"),
                _("keys"),
                _("divergent amount (%(currency)s)", currency=currency)
                if currency
                else _("divergent amount"),
            ),
            tuple(
                (
                    kind_name(kind),
                    format_number(int(v.get("count", 0))),
                    money_text(int(v.get("amount_minor", 0)), currency),
                )
                for kind, v in sorted(by_kind.items(), key=lambda kv: _kind_rank(kv[0]))
            ),
            right=frozenset({1, 2}),
        )
    ]


def _totals_text(items: Iterable[CorrectionRecord], *, counts: bool = False) -> str:
    """Each currency's total of ``items``, in that currency: ``R$ 205,00; EUR 12,00``."""
    totals: dict[str, list[int]] = {}
    for c in items:
        total = totals.setdefault(c.currency or "", [0, 0])
        total[0] += 1
        total[1] += c.amount_minor
    return "; ".join(
        ngettext(
            "%(amount)s in %(num)s transaction",
            "%(amount)s in %(num)s transactions",
            n,
            amount=money_text(amount, code or None),
        )
        if counts
        else money_text(amount, code or None)
        for code, (n, amount) in sorted(totals.items())
    )


#: the runbook step whose event carries the PSP ticket CSV (Mitigação 4)
PSP_TICKET_CSV_STEP = "mitigation.psp_ticket"


def psp_ticket_text(incident: Incident, events: Iterable[IncidentEvent]) -> str:
    """The PSP ticket for a report (Comunicação 3): the number recorded on the incident; else,
    when the ticket CSV was sent, that no number was recorded, with the CSV's link; else none."""
    if incident.psp_ticket:
        return incident.psp_ticket
    for event in reversed(list(events)):
        artifact = event.details.get("artifact") if event.step == PSP_TICKET_CSV_STEP else None
        if isinstance(artifact, Mapping) and artifact.get("link"):
            return _(
                "number not recorded (ticket CSV %(name)s: %(link)s); record it on the dashboard's "
                "incident page",
                name=artifact.get("name") or _("for the PSP"),
                link=artifact["link"],
            )
    return _("none")


def _recovery_blocks(events: Sequence[IncidentEvent]) -> list[_Block]:
    """The runbook's three recovery criteria as the recovery step last checked them, each with
    its figures, and the ledger beside the statement and the gateway per status and currency."""
    from airflow_recon_provider.reconciliation.remediation import RemediationStep

    blocks: list[_Block] = [_Heading(_("Recovery Criteria"))]
    checked = [
        e
        for e in events
        if e.step == RemediationStep.RECOVERY and isinstance(e.details.get("recovery"), Mapping)
    ]
    if not checked:
        return [*blocks, _Para(_("No recovery check was recorded."))]
    event = checked[-1]
    check = event.details["recovery"]
    blocks.append(
        _Para(
            _(
                "Checked at %(when)s (%(outcome)s):",
                when=format_time(event.created_at),
                outcome=event.outcome.split(":", 1)[0],
            )
        )
    )
    blocks.append(_Items(tuple(criterion.text() for criterion in recovery_criteria(check))))
    try:
        alignment = LedgerAlignment.from_dict(check["ledger"])
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return blocks
    if alignment.lines:
        blocks.append(
            _Table(
                (
                    _("status"),
                    _("currency"),
                    _("ledger"),
                    _("PSP statement"),
                    _("gateway"),
                    _("ledger vs statement"),
                ),
                tuple(
                    (
                        line.status,
                        line.currency or _("(none)"),
                        *(line.figure(side) for side in ("ledger", "statement", "gateway")),
                        _("aligned") if line.aligned else _("differs"),
                    )
                    for line in alignment.lines
                ),
                right=frozenset({2, 3, 4}),
            )
        )
    return blocks


def _closing_document(report: ClosingReport) -> tuple[str, list[_Block]]:
    incident = report.incident
    events = list(report.events)
    title = _(
        "%(incident)s — billing gateway reconciliation, PSP %(psp)s",
        incident=incident.incident_id,
        psp=incident.psp,
    )
    blocks: list[_Block] = [_Heading(title, 1)]
    if incident.state is not IncidentState.CLOSED:
        blocks.append(
            _Para(_("Draft: the incident is still %(state)s.", state=state_name(incident.state)), strong=True)
        )
    end = incident.closed_at or report.generated_at
    summary = [
        (_("PSP"), incident.psp),
        (_("State"), state_name(incident.state)),
        (_("Affected window"), format_window(incident.window)),
        (_("Opened"), _("%(when)s by %(who)s", when=format_time(incident.opened_at), who=incident.opened_by)),
        (_("Reason"), incident.reason or "-"),
        (_("Recovered"), format_time(incident.recovered_at)),
        (_("Closed"), format_time(incident.closed_at)),
        (_("Duration"), format_duration(end - incident.opened_at)),
        (_("PSP ticket"), psp_ticket_text(incident, events)),
        (_("Report generated"), format_time(report.generated_at)),
    ]
    blocks.append(_Fields(tuple(summary)))

    # what diverged, and when
    blocks.append(_Heading(_("What diverged")))
    opened = _opening_event(events)
    with_figures = [e for e in events if e.figures is not None]
    first = opened if opened is not None and opened.figures is not None else next(iter(with_figures), None)
    if first is not None and first.figures is not None:
        blocks.append(
            _Para(
                _(
                    "At %(when)s: %(figures)s.",
                    when=format_time(first.created_at),
                    figures=first.figures.describe(),
                )
            )
        )
    else:
        blocks.append(_Para(_("No divergence figures were recorded when the incident was opened.")))
    if with_figures:
        # amounts are compared in one reporting currency only (the opening's)
        currency = first.figures.reporting_currency if first is not None and first.figures else None
        measured = [(e, e.figures) for e in with_figures if e.figures is not None]
        comparable = [(e, f) for e, f in measured if f.reporting_currency == currency] or measured
        peak, at_peak = max(comparable, key=lambda ef: (ef[1].divergent_amount_minor, -ef[0].id))
        blocks.append(
            _Para(
                _(
                    "Peak at %(when)s: %(figures)s.",
                    when=format_time(peak.created_at),
                    figures=at_peak.describe(),
                )
            )
        )
    blocks.extend(_kind_blocks(opened.details if opened is not None else {}))

    # what was done
    blocks.append(_Heading(_("What was done")))
    steps = [e for e in events if not e.is_communication]
    if steps:
        blocks.append(
            _Table(
                (_("when"), _("step"), _("outcome"), _("by"), _("run"), _("divergence then")),
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
        blocks.append(_Para(_("No step was recorded.")))

    # who approved what
    blocks.append(_Heading(_("Who approved what")))
    if report.corrections:
        groups: dict[tuple[str, str, str], list[CorrectionRecord]] = {}
        for c in report.corrections:
            groups.setdefault((c.requested_by, c.approved_by, c.run_id), []).append(c)
        blocks.append(
            _Table(
                (
                    _("requested by"),
                    _("approved by"),
                    _("run"),
                    _("transactions"),
                    _("amount per currency"),
                    _("kinds"),
                ),
                tuple(
                    (
                        req,
                        appr,
                        run,
                        format_number(len(items)),
                        _totals_text(items),
                        ", ".join(sorted({kind_name(c.kind) for c in items})),
                    )
                    for (req, appr, run), items in groups.items()
                ),
                right=frozenset({3, 4}),
            )
        )
        blocks.append(
            _Para(
                ngettext(
                    "Corrected in total: %(num)s transaction; per currency (never added across "
                    "currencies): %(totals)s.",
                    "Corrected in total: %(num)s transactions; per currency (never added across "
                    "currencies): %(totals)s.",
                    len(report.corrections),
                    totals=_totals_text(report.corrections, counts=True),
                )
            )
        )
        listed = report.corrections[:CORRECTIONS_LISTED]
        blocks.append(
            _Table(
                (
                    _("applied"),
                    _("transaction"),
                    _("reference"),
                    _("type"),
                    _("kind"),
                    _("amount"),
                    _("approved by"),
                ),
                tuple(
                    (
                        format_time(c.applied_at),
                        str(c.transaction_id),
                        c.provider_reference,
                        c.transaction_type,
                        kind_name(c.kind),
                        c.money,
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
                    ngettext(
                        "… and %(num)s more corrected transaction (recon.corrections).",
                        "… and %(num)s more corrected transactions (recon.corrections).",
                        len(report.corrections) - len(listed),
                    )
                )
            )
    else:
        blocks.append(_Para(_("No transaction was corrected.")))
    approvals = [e for e in steps if e.details.get("approved_by")]
    if approvals:
        blocks.append(
            _Items(
                tuple(
                    _(
                        "%(when)s: %(step)s approved by %(approver)s",
                        when=format_time(e.created_at),
                        step=e.label,
                        approver=e.details["approved_by"],
                    )
                    + (
                        " " + _("(requested by %(requester)s)", requester=e.details["requested_by"])
                        if e.details.get("requested_by")
                        else ""
                    )
                    for e in approvals
                )
            )
        )

    # communication
    blocks.append(_Heading(_("Communication with finance")))
    sent = {ch: dict(stats) for ch, stats in report.deliveries.items()}
    lines = [
        f"{channel_name(channel)}: "
        + ", ".join(
            f"{format_number(n)} {delivery_status_name(status)}" for status, n in sorted(stats.items())
        )
        for channel, stats in sorted(sent.items())
    ]
    missed = [e for e in events if e.step == Step.UPDATE_MISSED]
    lines += [f"{format_time(e.created_at)}: {e.outcome}" for e in missed]
    blocks.append(_Items(tuple(lines)) if lines else _Para(_("No message was sent.")))

    blocks.extend(_recovery_blocks(events))

    # final numbers
    blocks.append(_Heading(_("Final numbers")))
    if report.final_figures is not None:
        note = f" ({report.final_figures_note})" if report.final_figures_note else ""
        blocks.append(_Para(f"{report.final_figures.describe()}{note}."))
        if first is not None and first.figures is not None:
            blocks.append(
                _Para(
                    _(
                        "Compared with the opening: %(change)s.",
                        change=_change(report.final_figures, first.figures, since_opening=True),
                    )
                )
            )
    else:
        blocks.append(_Para(_("Final figures are not available.")))

    blocks.append(_Heading(_("Lessons learned")))
    blocks.append(
        _Items(
            (
                _("Root cause: (to be completed at the review)"),
                _("Definitive corrections confirmed with finance: review to be scheduled (runbook: Closure)"),
                _("Follow-up actions: (owner, due date)"),
            )
        )
    )
    return title, blocks


def render_closing_report_markdown(report: ClosingReport) -> str:
    blocks = _closing_document(report)[1]
    return _to_markdown(blocks)


def render_closing_report_html(report: ClosingReport) -> str:
    title, blocks = _closing_document(report)
    return _to_html(blocks, title=title)


__all__ = [
    "CORRECTIONS_LISTED",
    "PSP_TICKET_CSV_STEP",
    "ClosingReport",
    "ContainmentNotice",
    "IncidentUpdate",
    "MessageKind",
    "RenderedMessage",
    "containment_subject",
    "psp_ticket_text",
    "render_closing_report_html",
    "render_closing_report_markdown",
    "render_containment",
    "render_update",
    "update_subject",
]
