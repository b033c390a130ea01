"""Runbook, Investigação 2 — Checar Jobs: "Em caso de falha, coletar logs (`airflow tasks logs`)".

The pure part of collecting the logs of the reconciliation DAG's failed tries
(``fetch_psp_statements`` / ``match_transactions``) for the incident:

- which DAG runs reconciled which cycle (:func:`run_cycle_start`: the run's ``cycle_start``
  param when it redid one cycle, else its data interval) and which runs concern the failed
  cycles of a PSP (:func:`runs_for_failed_cycles`);
- the end of one try's log reduced to its error lines (:func:`extract_error_lines`): the lines
  at ERROR level or above and the last lines of the traceback, at most a bounded number, from
  the log as Airflow's REST API serves it (``TaskInstancesLogResponse.content``: structured
  messages ``{"timestamp", "event", "level", "error_detail", ...}`` or plain text lines);
- secrets masked (:func:`mask_secrets`): the known secrets (connection passwords, API tokens)
  and generic patterns (bearer tokens, JWTs, passwords in URIs, ``password=...``);
- the Markdown that on-call reads (:func:`render_markdown`) and the short pt-BR outcome of the
  timeline (:func:`describe_outcome`).

Nothing here imports Airflow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow_recon_provider.reconciliation.errors import (
    ReconError,
    ServiceRequestError,
    ServiceUnavailableError,
)

#: the reconciliation DAG and its two tasks whose failures the runbook asks about
RECONCILIATION_DAG_ID = "billing_gateway_reconciliation"
RECONCILIATION_TASK_IDS = ("fetch_psp_statements", "match_transactions")
#: states of a try whose log tells why it failed (a retried try is ``up_for_retry`` in history)
FAILED_TRY_STATES = frozenset({"failed", "up_for_retry"})
#: default bounds: error lines kept per try, traceback frames kept per exception
DEFAULT_MAX_LINES = 20
DEFAULT_MAX_FRAMES = 3
#: what a masked secret becomes
MASK = "***"
#: shorter known secrets are not replaced literally (they would mask ordinary words)
MIN_SECRET_LENGTH = 4
#: longest line kept (a log line may carry a whole payload)
MAX_LINE_LENGTH = 500

_ERROR_LEVELS = frozenset({"error", "critical", "fatal", "exception"})
_PLAIN_ERROR = re.compile(r"(?:^|[\s\[{|])(?:ERROR|CRITICAL|FATAL)(?:[\s\]}|:-]|$)")
_GENERIC_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Bearer <token> anywhere; Authorization: Basic <credentials>
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1" + MASK),
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?\s*basic\s+)[A-Za-z0-9+/=]+"), r"\1" + MASK),
    # a JSON Web Token anywhere (header.payload.signature, base64url)
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), MASK),
    # scheme://user:password@host
    (re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@"), r"\1" + MASK + "@"),
    # password=..., "token": "...", api_key: ..., secret=...
    (
        re.compile(
            r"(?i)\b((?:[a-z0-9_-]*_)?(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|"
            r"access[_-]?key|private[_-]?key)[\"']?\s*[:=]\s*[\"']?)"
            r"(?!\*\*\*)[^\s\"',;&}]+"
        ),
        r"\1" + MASK,
    ),
)


class TaskLogsError(ReconError):
    """The failed tries' logs could not be collected (the investigation says so and carries on)."""


class AirflowApiUnavailableError(ServiceUnavailableError):
    """Airflow's REST API did not answer: unreachable, a timeout, HTTP 5xx or 429."""


class AirflowApiRequestError(ServiceRequestError, TaskLogsError):
    """Airflow's REST API refused a request (401 bad credentials, 403, 404 ...)."""


# -- which runs ----------------------------------------------------------------------------------


def _parse_moment(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        if not text or text in {"None", "null"}:
            return None
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(UTC)


def run_cycle_start(run: Mapping[str, Any]) -> datetime | None:
    """The cycle a ``billing_gateway_reconciliation`` run reconciled (a ``DAGRunResponse``):
    its ``cycle_start`` param when it redid one cycle (a reprocess), else its
    ``data_interval_start`` (the hourly schedule); ``None`` when neither says."""
    conf = run.get("conf") or {}
    if isinstance(conf, Mapping):
        redo = _parse_moment(conf.get("cycle_start"))
        if redo is not None:
            return redo
    return _parse_moment(run.get("data_interval_start"))


def run_concerns_psp(run: Mapping[str, Any], psp: str) -> bool:
    """A run reconciles the PSP unless its ``psp`` param names another one."""
    conf = run.get("conf") or {}
    only = conf.get("psp") if isinstance(conf, Mapping) else None
    return only in (None, "", "None") or str(only) == psp


def runs_for_failed_cycles(
    runs: Iterable[Mapping[str, Any]], *, psp: str, failed_cycles: Iterable[datetime]
) -> list[tuple[datetime, Mapping[str, Any]]]:
    """The runs (``DAGRunResponse`` dicts) that reconciled one of ``failed_cycles`` for ``psp``,
    as ``(cycle_start, run)`` in cycle then run order."""
    wanted = {moment.astimezone(UTC) for moment in failed_cycles}
    found = []
    for run in runs:
        cycle = run_cycle_start(run)
        if cycle is not None and cycle in wanted and run_concerns_psp(run, psp):
            found.append((cycle, run))
    found.sort(
        key=lambda item: (item[0], str(item[1].get("run_after") or ""), str(item[1].get("dag_run_id")))
    )
    return found


def task_instance_concerns_psp(ti: Mapping[str, Any], psp: str, run: Mapping[str, Any]) -> bool:
    """A reconciliation task instance (``TaskInstanceResponse``) is the PSP's: its rendered map
    index is the PSP (``map_index_template="{{ task.psp }}"``); without one (not rendered, or an
    unmapped site DAG), the run must be of this PSP alone."""
    if ti.get("task_id") not in RECONCILIATION_TASK_IDS:
        return False
    rendered = ti.get("rendered_map_index")
    if rendered not in (None, ""):
        return str(rendered) == psp
    conf = run.get("conf") or {}
    return isinstance(conf, Mapping) and str(conf.get("psp") or "") == psp


# -- the lines of one log --------------------------------------------------------------------------


def _clip(text: str) -> str:
    flat = " ".join(str(text).split()) if "\n" in str(text) else str(text).rstrip()
    return flat if len(flat) <= MAX_LINE_LENGTH else flat[:MAX_LINE_LENGTH] + "…"


def _clock(value: Any) -> str:
    moment = _parse_moment(value)
    return moment.strftime("%H:%M:%S") + " " if moment else ""


def _traceback_lines(detail: Any, *, max_frames: int) -> list[str]:
    """An ``error_detail`` (structlog's ``ExceptionDictTransformer``: the raised exception first,
    then its causes) as the end of a Python traceback: each cause's ``Type: value``, then the
    raised exception's last frames and its ``Type: value``."""
    if not isinstance(detail, list) or not detail:
        return []
    lines: list[str] = []
    chain = [item for item in detail if isinstance(item, Mapping)]
    for cause in reversed(chain[1:]):
        lines.append(_clip(f"{cause.get('exc_type', 'Exception')}: {cause.get('exc_value', '')}"))
    if chain:
        raised = chain[0]
        frames = [f for f in raised.get("frames") or [] if isinstance(f, Mapping)]
        lines.append("Traceback (most recent call last):" if len(frames) <= max_frames else "Traceback (…):")
        for frame in frames[-max_frames:]:
            where = f'"{frame.get("filename", "?")}", line {frame.get("lineno", "?")}'
            lines.append(_clip(f"  File {where}, in {frame.get('name', '?')}"))
        lines.append(_clip(f"{raised.get('exc_type', 'Exception')}: {raised.get('exc_value', '')}"))
    return lines


def _plain_traceback_tail(lines: Sequence[str], *, max_frames: int) -> list[str]:
    """The last Python traceback of a plain-text log: its last frames and the exception line."""
    start = None
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].lstrip().startswith("Traceback (most recent call last)"):
            start = index
            break
    if start is None:
        return []
    body = [line for line in lines[start + 1 :] if line.strip()]
    frames = [i for i, line in enumerate(body) if line.lstrip().startswith("File ")]
    keep_from = frames[-max_frames] if len(frames) >= max_frames else 0
    tail = body[keep_from:]
    # the exception line (not indented) ends the traceback; what follows is ordinary logging
    out: list[str] = []
    for line in tail:
        out.append(_clip(line))
        if not line.startswith((" ", "\t")):
            break
    return ["Traceback (…):", *out]


def extract_error_lines(
    content: Sequence[Any], *, max_lines: int = DEFAULT_MAX_LINES, max_frames: int = DEFAULT_MAX_FRAMES
) -> list[str]:
    """The error lines of one try's log: every message at ERROR level or above (with its time)
    and the end of each traceback it carries, keeping the last ``max_lines`` (the end of the log
    is where a task's failure is told).

    :param content: ``TaskInstancesLogResponse.content``: structured messages (dicts with
        ``event``, ``level``, ``timestamp``, ``error_detail``) or plain text lines.
    :param max_lines: at most this many lines (at least 1).
    :param max_frames: traceback frames kept per exception (at least 1).
    """
    if isinstance(max_lines, bool) or not isinstance(max_lines, int) or max_lines < 1:
        raise ValueError(f"max_lines must be an integer of at least 1, got {max_lines!r}")
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise ValueError(f"max_frames must be an integer of at least 1, got {max_frames!r}")
    lines: list[str] = []
    plain: list[str] = []
    for item in content:
        if isinstance(item, Mapping):
            level = str(item.get("level") or "").lower()
            detail = item.get("error_detail")
            if level in _ERROR_LEVELS or detail:
                event = str(item.get("event") or "")
                lines.append(_clip(f"{_clock(item.get('timestamp'))}{level.upper() or 'ERROR'} {event}"))
                lines.extend(_traceback_lines(detail, max_frames=max_frames))
        elif isinstance(item, str):
            for text in item.splitlines():
                plain.append(text)
                if _PLAIN_ERROR.search(text):
                    lines.append(_clip(text))
    if plain:
        lines.extend(_plain_traceback_tail(plain, max_frames=max_frames))
    return lines[-max_lines:]


# -- secrets ---------------------------------------------------------------------------------------


def mask_secrets(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with the known ``secrets`` (each at least :data:`MIN_SECRET_LENGTH` long) and the
    generic patterns (bearer tokens, JWTs, passwords in URIs, ``password=``/``token:``) replaced by
    ``***``."""
    out = str(text)
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        out = out.replace(secret, MASK)
    for pattern, replacement in _GENERIC_PATTERNS:
        out = pattern.sub(replacement, out)
    return out


# -- what the investigation keeps -----------------------------------------------------------------


@dataclass(frozen=True)
class FailedTryLog:
    """The error lines of one failed try of a reconciliation task (secrets masked)."""

    cycle_start: datetime
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    state: str
    lines: tuple[str, ...] = ()
    #: why this try's log could not be read (``None`` when it was)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "cycle_start": self.cycle_start.isoformat(),
            "run_id": self.run_id,
            "task_id": self.task_id,
            "map_index": self.map_index,
            "try_number": self.try_number,
            "state": self.state,
            "lines": list(self.lines),
            "error": self.error,
        }


@dataclass(frozen=True)
class TaskLogsCollection:
    """The outcome of collecting the failed tries' logs of a PSP's failed cycles.

    ``status``: ``collected`` (the API answered; ``tries`` may be empty when no run of a failed
    cycle had a failed try), ``not_configured`` (no ``airflow_api`` connection) or
    ``unavailable`` (the API did not answer or refused: ``reason`` says why).
    """

    psp: str
    failed_cycles: tuple[datetime, ...]
    status: str
    tries: tuple[FailedTryLog, ...] = ()
    runs: tuple[str, ...] = ()
    reason: str | None = None
    conn_id: str | None = None
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def collected(self) -> bool:
        return self.status == "collected"

    @property
    def line_count(self) -> int:
        return sum(len(t.lines) for t in self.tries)

    def as_dict(self) -> dict[str, Any]:
        return {
            "psp": self.psp,
            "status": self.status,
            "reason": self.reason,
            "connection": self.conn_id,
            "failed_cycles": [c.isoformat() for c in self.failed_cycles],
            "runs": list(self.runs),
            "tries": [t.as_dict() for t in self.tries],
            "line_count": self.line_count,
        }


def describe_outcome(collection: TaskLogsCollection, *, link: str | None = None) -> str:
    """The short outcome of the timeline event, in the language in force (pt-BR by default)."""
    from airflow_recon_provider.reconciliation.i18n import ngettext

    cycles = len(collection.failed_cycles)
    where = f" ({link})" if link else ""
    if not collection.collected:
        text = ngettext(
            "Logs of the failed tasks not collected (%(num)s failed cycle): %(why)s",
            "Logs of the failed tasks not collected (%(num)s failed cycles): %(why)s",
            cycles,
            why=collection.reason or collection.status,
        )
        return _clip(text + where)
    if not collection.tries:
        text = ngettext(
            "Logs of the failed tasks: no failed try of %(tasks)s found in Airflow for the %(num)s "
            "failed cycle",
            "Logs of the failed tasks: no failed try of %(tasks)s found in Airflow for the %(num)s "
            "failed cycles",
            cycles,
            tasks=" / ".join(RECONCILIATION_TASK_IDS),
        )
        return _clip(text + where)
    tasks = sorted({t.task_id for t in collection.tries})
    unread = sum(1 for t in collection.tries if t.error)
    text = "; ".join(
        (
            ngettext(
                "Logs of the failed tasks collected: %(num)s failed try (%(tasks)s)",
                "Logs of the failed tasks collected: %(num)s failed tries (%(tasks)s)",
                len(collection.tries),
                tasks=", ".join(tasks),
            )
            + " "
            + ngettext("in %(num)s cycle", "in %(num)s cycles", cycles),
            ngettext("%(num)s error line", "%(num)s error lines", collection.line_count),
        )
    )
    if unread:
        text += "; " + ngettext("%(num)s unreadable log", "%(num)s unreadable logs", unread)
    return _clip(text + where)


def _md(text: str) -> str:
    return text.replace("`", "'")


def render_markdown(collection: TaskLogsCollection, *, window: str) -> str:
    """``failed_task_logs_<psp>.md``: per failed try, its error lines (secrets already masked),
    in the language in force (the runbook's own step names: "Investigação — Checar Jobs")."""
    from airflow_recon_provider.reconciliation.i18n import _
    from airflow_recon_provider.reconciliation.steps import step_title

    cycles = ", ".join(c.isoformat() for c in collection.failed_cycles)
    generated = collection.generated_at.astimezone(UTC).isoformat(timespec="seconds")
    out = [
        "# "
        + _(
            "%(step)s: logs of the failed tasks — PSP %(psp)s",
            step=step_title("investigation.task_logs"),
            psp=collection.psp,
        ),
        "",
        _("- Window: %(window)s", window=window),
        _("- Generated at: %(moment)s", moment=generated),
        _("- Failed cycles: %(cycles)s", cycles=cycles) if cycles else _("- Failed cycles: none"),
        _(
            "- Source: Airflow's REST API (connection %(conn)s), DAG %(dag)s, tasks %(tasks)s",
            conn=f"`{collection.conn_id or '-'}`",
            dag=f"`{RECONCILIATION_DAG_ID}`",
            tasks=", ".join(f"`{t}`" for t in RECONCILIATION_TASK_IDS),
        ),
        _("- Secrets masked (`***`)."),
        "",
    ]
    if not collection.collected:
        out += [
            "## " + _("Logs not collected"),
            "",
            _("Reason: %(reason)s", reason=_md(collection.reason or collection.status)),
            "",
        ]
        out += [_("Collect them by hand: `airflow tasks logs` / the Airflow UI."), ""]
        return "\n".join(out)
    if not collection.tries:
        out += [_("No failed try of these tasks in the runs of the failed cycles."), ""]
        return "\n".join(out)
    for attempt in collection.tries:
        map_part = f", map_index {attempt.map_index}" if attempt.map_index >= 0 else ""
        out += [
            "## "
            + _(
                "%(task)s — cycle %(cycle)s — try %(attempt)s",
                task=attempt.task_id,
                cycle=attempt.cycle_start.isoformat(),
                attempt=attempt.try_number,
            ),
            "",
            _(
                "Run %(run)s%(map)s, state %(state)s.",
                run=f"`{_md(attempt.run_id)}`",
                map=map_part,
                state=f"`{attempt.state}`",
            ),
            "",
        ]
        if attempt.error:
            out += [_("Log not read: %(error)s", error=_md(attempt.error)), ""]
        elif not attempt.lines:
            out += [_("No error line at the end of the log."), ""]
        else:
            out += ["```text", *(line.replace("```", "'''") for line in attempt.lines), "```", ""]
    return "\n".join(out)


__all__ = [
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_LINES",
    "FAILED_TRY_STATES",
    "MASK",
    "RECONCILIATION_DAG_ID",
    "RECONCILIATION_TASK_IDS",
    "AirflowApiRequestError",
    "AirflowApiUnavailableError",
    "FailedTryLog",
    "TaskLogsCollection",
    "TaskLogsError",
    "describe_outcome",
    "extract_error_lines",
    "mask_secrets",
    "render_markdown",
    "run_concerns_psp",
    "run_cycle_start",
    "runs_for_failed_cycles",
    "task_instance_concerns_psp",
]
