"""What the dashboard shows of incidents, open and closed, and of their evidence.

Runbook, Comunicação ("Atualizar incidente com percentual de divergência e passos
executados", "Registrar número do ticket do PSP") and Encerramento (the lessons learned
attached to the incident): a closed incident stays readable, with its timeline, the
corrections applied, the PSP ticket, every artifact of the incident and the closing report.

Read from the gateway database through the connection Airflow already has
(``billing_gateway_db``): ``recon.incidents``, ``recon.incident_events``,
``recon.corrections`` and ``recon.artifacts`` (the evidence each task wrote to object
storage). Nothing here writes. Every problem is a :class:`DashboardUnavailable` whose
message (in the language in force, pt-BR by default) is what the person reading the page is
told, with its HTTP status.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID
from airflow_recon_provider.plugins.dashboard_data import DashboardUnavailable
from airflow_recon_provider.reconciliation import steps
from airflow_recon_provider.reconciliation.config import ReconConfig
from airflow_recon_provider.reconciliation.errors import (
    ConnectionMissingError,
    DatabaseUnavailableError,
    ReconError,
)
from airflow_recon_provider.reconciliation.i18n import N_, _, ngettext
from airflow_recon_provider.reconciliation.incidents import (
    INCIDENT_ID_RE,
    CorrectionRecord,
    Incident,
    IncidentEvent,
    IncidentNotFoundError,
    IncidentState,
)

if TYPE_CHECKING:
    import psycopg

    from airflow_recon_provider.artifacts import ArtifactRecord
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.reconciliation.finance_review import FinanceReview

log = logging.getLogger(__name__)

PER_PAGE_DEFAULT = 20
PER_PAGE_MAX = 100
#: page numbers people type stay far below this; a bigger one is a mistake, not a page
PAGE_MAX = 1_000_000
#: ``recon.artifacts.id`` is a bigserial
ARTIFACT_ID_MAX = 2**63 - 1
#: Airflow's DAG id rule (``airflow.utils.helpers.KEY_REGEX``) and length
_DAG_ID_RE = re.compile(r"[\w.-]{1,250}")
_RUN_ID_MAX = 250

#: the kinds of ``recon.artifacts.kind`` and what people call them (message ids, translated
#: by :func:`artifact_label`)
ARTIFACT_KINDS: dict[str, str] = {
    "snapshot": N_("Database snapshot (CSV)"),
    "dry_run": N_("Data correction dry run (CSV)"),
    "psp_ticket": N_("Ticket to the PSP (CSV)"),
    "closing_report": N_("Closing report (Markdown)"),
    "closing_report_html": N_("Closing report (HTML)"),
    "release_record": N_("Release record"),
}


def artifact_label(kind: str) -> str:
    """What people call an artifact kind, in the language in force; an unknown kind as it is."""
    return _(ARTIFACT_KINDS[kind]) if kind in ARTIFACT_KINDS else kind


def state_label(state: IncidentState | str) -> str:
    """An incident state in the language in force (``em mitigação``): the one table of
    :mod:`reconciliation.steps`."""
    return steps.state_name(state)


_T = TypeVar("_T")


# -- what the pages show ----------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class ArtifactView:
    """One row of ``recon.artifacts`` as the pages show it: a file some task wrote to object
    storage. Its storage URL stays on the server (the dashboard streams it); people get
    ``href``."""

    record: ArtifactRecord

    id = property(lambda self: self.record.id)
    dag_id = property(lambda self: self.record.dag_id)
    run_id = property(lambda self: self.record.run_id)
    task_id = property(lambda self: self.record.task_id)
    psp = property(lambda self: self.record.psp)
    incident_id = property(lambda self: self.record.incident_id)
    kind = property(lambda self: self.record.kind)
    name = property(lambda self: self.record.name)
    content_type = property(lambda self: self.record.content_type)
    size_bytes = property(lambda self: self.record.size_bytes)
    sha256 = property(lambda self: self.record.sha256)
    created_at = property(lambda self: self.record.created_at)

    @property
    def label(self) -> str:
        return artifact_label(self.kind)

    @property
    def href(self) -> str:
        """The download, relative to ``/recon/``."""
        return f"artifacts/{self.id}"

    @property
    def run_href(self) -> str:
        """The run's artifacts, relative to ``/recon/``."""
        return run_artifacts_href(self.dag_id, self.run_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "psp": self.psp,
            "incident_id": self.incident_id,
            "kind": self.kind,
            "label": self.label,
            "name": self.name,
            "content_type": self.content_type,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "created_at": _iso(self.created_at),
            "href": "/recon/" + self.href,
            "run_href": "/recon/" + self.run_href,
        }


def run_artifacts_href(dag_id: str, run_id: str) -> str:
    """``runs/<dag_id>/<run_id>/artifacts`` relative to ``/recon/`` (run ids hold ``:`` and ``+``)."""
    return f"runs/{quote(dag_id, safe='')}/{quote(run_id, safe='')}/artifacts"


@dataclass(frozen=True)
class IncidentRow:
    """One line of the list of incidents."""

    incident: Incident
    finance_ticket: str | None
    corrections: int

    def as_dict(self) -> dict[str, Any]:
        return {**incident_dict(self.incident), "finance_ticket": self.finance_ticket,
                "corrections": self.corrections}  # fmt: skip


@dataclass(frozen=True)
class IncidentList:
    """One page of incidents, newest first, and where it stands among all of them."""

    rows: tuple[IncidentRow, ...]
    page: int
    per_page: int
    total: int
    psp: str | None = None
    state: IncidentState | None = None

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def first(self) -> int:
        """1-based position of the first row of the page (0 when there is none)."""
        return (self.page - 1) * self.per_page + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0

    def query(self, page: int) -> str:
        """The query string of another page with the same filters."""
        parts = [f"page={page}"]
        if self.per_page != PER_PAGE_DEFAULT:
            parts.append(f"per_page={self.per_page}")
        if self.psp:
            parts.append(f"psp={quote(self.psp)}")
        if self.state:
            parts.append(f"state={self.state.value}")
        return "?" + "&".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "page": self.page,
            "per_page": self.per_page,
            "pages": self.pages,
            "total": self.total,
            "first": self.first,
            "last": self.last,
            "psp": self.psp,
            "state": self.state.value if self.state else None,
            "incidents": [r.as_dict() for r in self.rows],
        }


@dataclass(frozen=True)
class IncidentDetail:
    """Everything about one incident: the record, its whole timeline, the corrections
    applied, the artifacts of the incident and of its runs, and the closing report."""

    incident: Incident
    finance_ticket: str | None
    events: tuple[IncidentEvent, ...]
    corrections: tuple[CorrectionRecord, ...]
    artifacts: tuple[ArtifactView, ...]
    #: why the artifacts cannot be listed (``recon.artifacts`` missing), else ``None``
    artifacts_note: str | None
    closing_report_md: str | None
    closing_report_html: str | None

    @property
    def runs(self) -> tuple[tuple[str, str], ...]:
        """``(dag_id, run_id)`` of every run that wrote an artifact, in order of appearance."""
        seen: dict[tuple[str, str], None] = {}
        for a in self.artifacts:
            seen.setdefault((a.dag_id, a.run_id), None)
        return tuple(seen)

    @property
    def finance_review(self) -> FinanceReview | None:
        """The review with finance scheduled at closure (Encerramento 4), if any."""
        return self._finance_review()[0]

    @property
    def finance_review_problem(self) -> str | None:
        """Why the recorded review cannot be shown (pt-BR), else ``None``."""
        return self._finance_review()[1]

    def _finance_review(self) -> tuple[FinanceReview | None, str | None]:
        from airflow_recon_provider.reconciliation.finance_review import ReviewInputError, scheduled_review

        try:
            return scheduled_review(self.incident.incident_id, self.events), None
        except ReviewInputError as exc:
            return None, _("The review recorded on the timeline could not be read: %(error)s", error=exc)

    @property
    def closing_report_artifact(self) -> ArtifactView | None:
        """The latest closing report written to object storage (HTML first)."""
        for kind in ("closing_report_html", "closing_report"):
            found = [a for a in self.artifacts if a.kind == kind]
            if found:
                return found[-1]
        return None

    def corrected_totals(self) -> dict[str, int]:
        """Corrected amount per currency (never added across currencies); ``""``: currency
        not recorded."""
        totals: dict[str, int] = {}
        for c in self.corrections:
            totals[c.currency or ""] = totals.get(c.currency or "", 0) + c.amount_minor
        return dict(sorted(totals.items()))

    def _finance_reports(self) -> list[dict[str, Any]]:
        """Finance's reports on this incident and their dry runs' findings (Detecção 2)."""
        from airflow_recon_provider.plugins.dashboard_finance_report import finance_reports

        return [r.as_dict() for r in finance_reports(self)]

    def as_dict(self) -> dict[str, Any]:
        return {
            **incident_dict(self.incident),
            "finance_ticket": self.finance_ticket,
            "finance_reports": self._finance_reports(),
            "timeline": [event_dict(e) for e in self.events],
            "corrections": [correction_dict(c) for c in self.corrections],
            "corrected_totals": self.corrected_totals(),
            "artifacts": [a.as_dict() for a in self.artifacts],
            "artifacts_note": self.artifacts_note,
            "finance_review": self.finance_review.as_details() if self.finance_review else None,
            "closing_report": {
                "markdown": self.closing_report_md,
                "html_href": f"/recon/incidents/{self.incident.incident_id}/closing-report"
                if self.closing_report_html
                else None,
                "artifact": self.closing_report_artifact.as_dict() if self.closing_report_artifact else None,
            },
        }


@dataclass(frozen=True)
class RunArtifacts:
    dag_id: str
    run_id: str
    artifacts: tuple[ArtifactView, ...]
    artifacts_note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "artifacts": [a.as_dict() for a in self.artifacts],
            "artifacts_note": self.artifacts_note,
        }


def incident_dict(i: Incident) -> dict[str, Any]:
    return {
        "incident_id": i.incident_id,
        "psp": i.psp,
        "state": i.state.value,
        "state_label": state_label(i.state),
        "opened_by": i.opened_by,
        "opened_at": _iso(i.opened_at),
        "updated_at": _iso(i.updated_at),
        "recovered_at": _iso(i.recovered_at),
        "closed_at": _iso(i.closed_at),
        "window_start": _iso(i.window.start) if i.window else None,
        "window_end": _iso(i.window.end) if i.window else None,
        "reason": i.reason,
        "psp_ticket": i.psp_ticket,
        "eta_resumption": _iso(i.eta_resumption),
        "figures": i.figures.as_dict() if i.figures else None,
    }


def event_dict(e: IncidentEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "step": e.step,
        "outcome": e.outcome,
        "actor": e.actor,
        "created_at": _iso(e.created_at),
        "run_id": e.run_id,
        "figures": e.figures.as_dict() if e.figures else None,
        "details": dict(e.details),
    }


def correction_dict(c: CorrectionRecord) -> dict[str, Any]:
    return {
        "transaction_id": c.transaction_id,
        "provider_reference": c.provider_reference,
        "transaction_type": c.transaction_type,
        "kind": c.kind,
        "amount_minor": c.amount_minor,
        "currency": c.currency,
        "before": dict(c.before),
        "after": dict(c.after),
        "requested_by": c.requested_by,
        "approved_by": c.approved_by,
        "run_id": c.run_id,
        "applied_at": _iso(c.applied_at),
    }


# -- checking what the URL says ---------------------------------------------------------------


def parse_incident_id(value: str) -> str:
    if not INCIDENT_ID_RE.fullmatch(value or ""):
        raise DashboardUnavailable(
            _(
                "Invalid incident id: %(value)s. The format is INCIDENT-<number>, for example INCIDENT-472.",
                value=repr(value),
            ),
            status_code=400,
        )
    return value


def parse_artifact_id(value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,19}", value or "") or not 1 <= int(value) <= ARTIFACT_ID_MAX:
        raise DashboardUnavailable(
            _("Invalid artifact id: %(value)s. The id is a positive whole number.", value=repr(value)),
            status_code=400,
        )
    return int(value)


def parse_run(dag_id: str, run_id: str) -> tuple[str, str]:
    if not _DAG_ID_RE.fullmatch(dag_id or ""):
        raise DashboardUnavailable(
            _(
                "Invalid DAG id: %(value)s. Use letters, digits, '_', '.' and '-' (up to 250 characters).",
                value=repr(dag_id),
            ),
            status_code=400,
        )
    if not run_id or len(run_id) > _RUN_ID_MAX or any(ord(ch) < 32 for ch in run_id):
        raise DashboardUnavailable(
            _(
                "Invalid run id: %(value)s (empty, too long or with control characters).",
                value=repr(run_id),
            ),
            status_code=400,
        )
    return dag_id, run_id


def _positive(value: str | None, *, name: str, default: int, maximum: int) -> int:
    if value is None or value == "":
        return default
    if not re.fullmatch(r"[0-9]{1,9}", value) or not 1 <= int(value) <= maximum:
        raise DashboardUnavailable(
            _(
                "Invalid parameter %(name)s: %(value)s. Use a whole number from 1 to %(max)s.",
                name=name,
                value=repr(value),
                max=maximum,
            ),
            status_code=400,
        )
    return int(value)


def parse_list_params(
    *, page: str | None, per_page: str | None, psp: str | None, state: str | None
) -> tuple[int, int, str | None, IncidentState | None]:
    """The list's query parameters, checked; :class:`DashboardUnavailable` (400) names the bad one."""
    from airflow_recon_provider.reconciliation.config import check_psp_name

    number = _positive(page, name="page", default=1, maximum=PAGE_MAX)
    size = _positive(per_page, name="per_page", default=PER_PAGE_DEFAULT, maximum=PER_PAGE_MAX)
    psp = psp.strip() if psp else None
    if psp:
        try:
            check_psp_name(psp)
        except ReconError:
            raise DashboardUnavailable(
                _(
                    "Invalid parameter psp: %(value)s. A PSP name has lower-case letters, digits and '_'.",
                    value=repr(psp),
                ),
                status_code=400,
            ) from None
    chosen = None
    if state:
        try:
            chosen = IncidentState(state.strip().lower())
        except ValueError:
            raise DashboardUnavailable(
                _(
                    "Invalid parameter state: %(value)s. States: %(states)s.",
                    value=repr(state),
                    states=", ".join(f"{s.value} ({state_label(s)})" for s in IncidentState),
                ),
                status_code=400,
            ) from None
    return number, size, psp or None, chosen


# -- reading ----------------------------------------------------------------------------------

_INCIDENT_FILTER = (
    " WHERE (%(psp)s::text IS NULL OR psp = %(psp)s) AND (%(state)s::text IS NULL OR state = %(state)s)"
)
#: the latest finance ticket recorded on the incident's timeline (the finance report DAG's
#: ``finance_ticket``), if any
_FINANCE_TICKET = (
    "(SELECT e.details->>'finance_ticket' FROM recon.incident_events e"
    " WHERE e.incident_id = i.incident_id AND coalesce(e.details->>'finance_ticket', '') <> ''"
    " ORDER BY e.id DESC LIMIT 1)"
)
_CORRECTION_COUNT = "(SELECT count(*) FROM recon.corrections c WHERE c.incident_id = i.incident_id)"
_ARTIFACTS_MISSING = N_(
    "The table recon.artifacts does not exist in this database: the artifacts appear after "
    "`airflow-recon migrate`."
)


def _artifact_columns() -> str:
    from airflow_recon_provider.hooks.artifacts import COLUMNS

    return COLUMNS


def _artifacts(rows: Sequence[Sequence[Any]]) -> tuple[ArtifactView, ...]:
    from airflow_recon_provider.hooks.artifacts import _record

    return tuple(ArtifactView(_record(r)) for r in rows)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class IncidentReader:
    """Reads incidents and artifacts through :class:`IncidentHook` (the ``recon`` schema has
    fixed names: plain SQL with bound values).

    :param billing_gateway_conn_id: Airflow connection of the gateway database.
    """

    def __init__(self, *, billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID) -> None:
        self.conn_id = billing_gateway_conn_id

    # -- public -------------------------------------------------------------------------------
    def incidents(
        self,
        *,
        page: int = 1,
        per_page: int = PER_PAGE_DEFAULT,
        psp: str | None = None,
        state: IncidentState | None = None,
    ) -> IncidentList:
        """One page of incidents (every state), newest first; 404 past the last page."""
        return self._guard(lambda: self._list(page, per_page, psp, state))

    def detail(self, incident_id: str) -> IncidentDetail:
        """The incident, or :class:`DashboardUnavailable` 400 (malformed id) / 404 (unknown)."""
        parse_incident_id(incident_id)
        return self._guard(lambda: self._detail(incident_id))

    def closing_report(self, incident_id: str) -> tuple[str | None, str | None]:
        """The closing report stored on the incident (markdown, HTML); 404 when there is none."""
        parse_incident_id(incident_id)
        md, html = self._guard(lambda: self._hook().stored_closing_report(incident_id))
        if not md and not html:
            raise DashboardUnavailable(
                _("Incident %(incident)s has no closing report yet.", incident=incident_id), status_code=404
            )
        return md, html

    def artifact(self, artifact_id: int) -> ArtifactView:
        """One artifact's record; 404 when unknown."""

        def read() -> ArtifactView:
            with self._connect() as conn:
                if not self._artifacts_table(conn):
                    raise DashboardUnavailable(_(_ARTIFACTS_MISSING), status_code=503)
                row = conn.execute(
                    f"SELECT {_artifact_columns()} FROM recon.artifacts WHERE id = %s", (artifact_id,)
                ).fetchone()
            if row is None:
                raise DashboardUnavailable(
                    _("Artifact %(id)s does not exist.", id=artifact_id), status_code=404
                )
            return _artifacts([row])[0]

        return self._guard(read)

    def run_artifacts(self, dag_id: str, run_id: str) -> RunArtifacts:
        """Every artifact one DAG run wrote, in the order written."""
        parse_run(dag_id, run_id)

        def read() -> RunArtifacts:
            with self._connect() as conn:
                if not self._artifacts_table(conn):
                    return RunArtifacts(dag_id, run_id, (), _(_ARTIFACTS_MISSING))
                rows = conn.execute(
                    f"SELECT {_artifact_columns()} FROM recon.artifacts WHERE dag_id = %s AND run_id = %s"
                    " ORDER BY created_at, id",
                    (dag_id, run_id),
                ).fetchall()
            return RunArtifacts(dag_id, run_id, _artifacts(rows))

        return self._guard(read)

    # -- internals ------------------------------------------------------------------------------
    def _hook(self) -> IncidentHook:
        from airflow_recon_provider.hooks.incidents import IncidentHook

        # the recon schema has fixed names: no site configuration is needed to read it
        return IncidentHook(billing_gateway_conn_id=self.conn_id, config=ReconConfig())

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection]:
        with self._hook().connect(autocommit=True) as conn:
            yield conn

    @staticmethod
    def _artifacts_table(conn: psycopg.Connection) -> bool:
        row = conn.execute("SELECT to_regclass('recon.artifacts') IS NOT NULL").fetchone()
        return bool(row and row[0])

    def _list(self, page: int, per_page: int, psp: str | None, state: IncidentState | None) -> IncidentList:
        from airflow_recon_provider.hooks._rows import by_name
        from airflow_recon_provider.hooks.incidents import INCIDENT_COLUMNS, incident_from_row

        params = {"psp": psp, "state": state.value if state else None}
        with self._connect() as conn:
            (total,) = conn.execute(
                "SELECT count(*) FROM recon.incidents" + _INCIDENT_FILTER, params
            ).fetchone()
            rows = (
                by_name(conn)
                .execute(
                    f"SELECT {INCIDENT_COLUMNS}, {_FINANCE_TICKET} AS finance_ticket,"
                    f" {_CORRECTION_COUNT} AS correction_count"
                    " FROM recon.incidents i" + _INCIDENT_FILTER + " ORDER BY opened_at DESC, id DESC"
                    " LIMIT %(limit)s OFFSET %(offset)s",
                    {**params, "limit": per_page, "offset": (page - 1) * per_page},
                )
                .fetchall()
            )
        listing = IncidentList(
            rows=tuple(
                IncidentRow(incident_from_row(r), r["finance_ticket"], int(r["correction_count"]))
                for r in rows
            ),
            page=page,
            per_page=per_page,
            total=int(total),
            psp=psp,
            state=state,
        )
        if page > listing.pages:
            raise DashboardUnavailable(
                ngettext(
                    "Page %(page)s does not exist: there is %(num)s incident in %(pages)s.",
                    "Page %(page)s does not exist: there are %(num)s incidents in %(pages)s.",
                    listing.total,
                    page=page,
                    pages=ngettext("%(num)s page", "%(num)s pages", listing.pages),
                ),
                status_code=404,
            )
        return listing

    def _detail(self, incident_id: str) -> IncidentDetail:
        hook = self._hook()
        try:
            incident = hook.get(incident_id)
        except IncidentNotFoundError:
            raise DashboardUnavailable(
                _("Incident %(incident)s does not exist.", incident=incident_id), status_code=404
            ) from None
        events = tuple(hook.events_after(incident_id, 0))
        corrections = tuple(hook.corrections(incident_id))
        md, html = hook.stored_closing_report(incident_id)
        finance_ticket = next(
            (str(e.details["finance_ticket"]) for e in reversed(events) if e.details.get("finance_ticket")),
            None,
        )
        run_ids = sorted({e.run_id for e in events if e.run_id} | {c.run_id for c in corrections})
        with self._connect() as conn:
            if self._artifacts_table(conn):
                # the incident's own artifacts, and those of its PSP's runs on its timeline
                # (a dry run's snapshot may predate the incident's id)
                rows = conn.execute(
                    f"SELECT {_artifact_columns()} FROM recon.artifacts WHERE incident_id = %(id)s"
                    " OR (run_id = ANY(%(runs)s) AND (psp = %(psp)s OR psp IS NULL) AND incident_id IS NULL)"
                    " ORDER BY created_at, id",
                    {"id": incident_id, "runs": run_ids, "psp": incident.psp},
                ).fetchall()
                artifacts, note = _artifacts(rows), None
            else:
                artifacts, note = (), _(_ARTIFACTS_MISSING)
        return IncidentDetail(
            incident=incident,
            finance_ticket=finance_ticket,
            events=events,
            corrections=corrections,
            artifacts=artifacts,
            artifacts_note=note,
            closing_report_md=md,
            closing_report_html=html,
        )

    def _guard(self, read: Callable[[], _T]) -> _T:
        """Run ``read``; whatever keeps the page from being shown becomes one sentence in the
        language in force."""
        try:
            return read()
        except DashboardUnavailable:
            raise
        except ConnectionMissingError as exc:
            raise DashboardUnavailable(
                _("The Airflow connection to the gateway database is not configured: %(error)s", error=exc)
            ) from None
        except DatabaseUnavailableError as exc:
            raise DashboardUnavailable(
                _("The gateway database did not answer: %(error)s", error=exc)
            ) from None
        except ReconError as exc:
            raise DashboardUnavailable(_("The incidents could not be read: %(error)s", error=exc)) from None
        except Exception as exc:
            from airflow_recon_provider.hooks._connections import is_missing_connection

            if is_missing_connection(exc):
                raise DashboardUnavailable(
                    _(
                        "The Airflow connection %(conn)s is not defined; create it in the UI or set "
                        "%(variable)s.",
                        conn=repr(self.conn_id),
                        variable=f"AIRFLOW_CONN_{self.conn_id.upper()}",
                    )
                ) from None
            if _is_undefined_table(exc):
                raise DashboardUnavailable(
                    _(
                        "The recon schema does not exist in this database: the incidents appear after "
                        "`airflow-recon migrate`."
                    )
                ) from None
            if _is_database_error(exc):
                raise DashboardUnavailable(
                    _(
                        "The database of connection %(conn)s failed: %(error)s",
                        conn=repr(self.conn_id),
                        error=_first_line(exc),
                    )
                ) from None
            log.exception("reconciliation dashboard: incidents failed")
            raise DashboardUnavailable(
                _(
                    "Unexpected error (%(error)s); the API server's log has the details.",
                    error=f"{type(exc).__name__}: {_first_line(exc)}",
                ),
                status_code=500,
            ) from None


def _is_database_error(exc: BaseException) -> bool:
    import psycopg

    return isinstance(exc, psycopg.Error)


def _is_undefined_table(exc: BaseException) -> bool:
    import psycopg

    return isinstance(exc, psycopg.errors.UndefinedTable)


__all__ = [
    "ARTIFACT_KINDS",
    "PER_PAGE_DEFAULT",
    "PER_PAGE_MAX",
    "ArtifactView",
    "IncidentDetail",
    "IncidentList",
    "IncidentReader",
    "IncidentRow",
    "RunArtifacts",
    "artifact_label",
    "parse_artifact_id",
    "parse_incident_id",
    "parse_list_params",
    "parse_run",
    "run_artifacts_href",
    "state_label",
]
