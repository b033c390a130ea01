"""Hook on the incident record in the gateway database (connection ``billing_gateway_db``).

Runbook, Comunicação: "Atualizar incidente com percentual de divergência e passos
executados" and "Registrar número do ticket do PSP (se houver) no incidente"; Encerramento:
the lessons learned attached to the incident. Every operator of the remediation DAG writes
its step here (:meth:`IncidentHook.record_event`); the finance updates read the timeline
back; the messages they send are kept in the notification outbox
(:mod:`airflow_recon_provider.hooks.notifications`, :class:`NotificationOutboxHook`; the
outbox methods of :class:`IncidentHook` delegate there).

The ``recon`` schema has fixed names (the provider owns it), so its SQL is plain text with
bound values, and rows are read by column name (``psycopg.rows.dict_row``); the configurable
gateway tables are only reached through :class:`BillingGatewayHook`. Writes always go to the
primary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.hooks._json import json_details
from airflow_recon_provider.hooks._postgres import ReconPostgresHook
from airflow_recon_provider.hooks._rows import by_name
from airflow_recon_provider.hooks.notifications import CHANNELS, Delivery, NotificationOutboxHook
from airflow_recon_provider.i18n import _, language_scope
from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID, PAYMENTS_LEDGER_CONN_ID
from airflow_recon_provider.reconciliation import queries
from airflow_recon_provider.reconciliation.config import check_psp_name
from airflow_recon_provider.reconciliation.errors import (
    ConnectionMissingError,
    DependencyUnavailableError,
    ReconError,
)
from airflow_recon_provider.reconciliation.figures import Figures
from airflow_recon_provider.reconciliation.incident_messages import ClosingReport
from airflow_recon_provider.reconciliation.incidents import (
    CorrectionRecord,
    IllegalTransitionError,
    Incident,
    IncidentAlreadyOpenError,
    IncidentEvent,
    IncidentExistsError,
    IncidentInputError,
    IncidentNotFoundError,
    IncidentState,
    Step,
    check_aware,
    check_incident_id,
    check_text,
    check_transition,
    format_incident_id,
    format_time,
    parse_state,
)
from airflow_recon_provider.reconciliation.steps import state_name
from airflow_recon_provider.reconciliation.window import Window

if TYPE_CHECKING:
    import psycopg

    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.reconciliation.detection import OpenIncidentActivity
    from airflow_recon_provider.reconciliation.report import DivergenceSummary

#: the columns :func:`incident_from_row` reads, by name
INCIDENT_COLUMNS = (
    "incident_id, psp, state, opened_by, opened_at, updated_at, window_start, window_end, reason,"
    " psp_ticket, eta_resumption, divergent_amount_minor, divergent_count, divergence_pct,"
    " recovered_at, closed_at, communication_done_at, currency_figures"
)
_EVENT_COLUMNS = (
    "id, incident_id, step, outcome, actor, created_at, run_id, divergent_amount_minor,"
    " divergent_count, divergence_pct, details, currency_figures"
)
#: how many numbers the generator skips at most when ids were also given by hand
_MAX_ID_SKIPS = 1000


def _people(text: Callable[[], str]) -> str:
    """A timeline text, in the configured language (``[recon] language``): the timeline keeps
    it as written."""
    with language_scope():
        return text()


def _transition_text(current: IncidentState, target: IncidentState, note: str) -> str:
    """``aberto → em mitigação: <note>``: the states in words, never their ids."""
    with language_scope():
        text = _("%(before)s → %(after)s", before=state_name(current), after=state_name(target))
    return text + (f": {note}" if note else "")


def _figures(row: Mapping[str, Any]) -> Figures | None:
    """The converted amount, count and % columns with their ``currency_figures`` (reporting
    currency, each currency's own figures, the rates used); figures recorded before that
    column read back with no currency rather than an assumed one."""
    return Figures.from_columns(
        row["divergent_amount_minor"], row["divergent_count"], row["divergence_pct"], row["currency_figures"]
    )


def incident_from_row(row: Mapping[str, Any]) -> Incident:
    """A row of ``SELECT {INCIDENT_COLUMNS} FROM recon.incidents`` read by column name
    (``dict_row``); other columns of the row are ignored."""
    start, end = row["window_start"], row["window_end"]
    return Incident(
        incident_id=row["incident_id"],
        psp=row["psp"],
        state=IncidentState(row["state"]),
        opened_by=row["opened_by"],
        opened_at=row["opened_at"],
        updated_at=row["updated_at"],
        window=Window(start, end) if start is not None and end is not None and end > start else None,
        reason=row["reason"] or "",
        psp_ticket=row["psp_ticket"],
        eta_resumption=row["eta_resumption"],
        figures=_figures(row),
        recovered_at=row["recovered_at"],
        closed_at=row["closed_at"],
        communication_done_at=row["communication_done_at"],
    )


def _event(row: Mapping[str, Any]) -> IncidentEvent:
    return IncidentEvent(
        id=int(row["id"]),
        incident_id=row["incident_id"],
        step=row["step"],
        outcome=row["outcome"],
        actor=row["actor"],
        created_at=row["created_at"],
        run_id=row["run_id"],
        figures=_figures(row),
        details=row["details"] or {},
    )


def _correction(row: Mapping[str, Any]) -> CorrectionRecord:
    return CorrectionRecord(
        transaction_id=int(row["transaction_id"]),
        provider_reference=row["provider_reference"],
        transaction_type=row["transaction_type"],
        kind=row["kind"],
        amount_minor=int(row["amount_minor"]),
        requested_by=row["requested_by"],
        approved_by=row["approved_by"],
        run_id=row["run_id"],
        applied_at=row["applied_at"],
        before=row["before"] or {},
        after=row["after"] or {},
        # '' for corrections recorded before they kept their currency: not guessed
        currency=(row["currency"] or "").upper() or None,
    )


def _kind_split(figures: Any) -> dict[str, Any]:
    """The per-kind split of a divergence summary or an alert payload, for the opening event
    (the closing report shows it): each currency's kinds in that currency's own minor units
    (``by_currency``), and the kinds converted to ``reporting_currency`` (``by_kind``)."""
    if isinstance(figures, Mapping):
        data: Mapping[str, Any] = figures
    elif hasattr(figures, "by_kind") and hasattr(figures, "as_dict"):
        data = figures.as_dict()
    else:
        return {}
    if "by_kind" not in data:
        return {}
    split: dict[str, Any] = {"by_kind": data["by_kind"]}
    if data.get("by_currency") is not None:
        split["reporting_currency"] = data.get("reporting_currency")
        split["by_currency"] = data["by_currency"]
    return split


class IncidentHook(ReconPostgresHook):
    """Read and write ``recon.incidents``, ``recon.incident_events`` and ``recon.notifications``.

    :param billing_gateway_conn_id: Airflow connection of the gateway database (the ``recon``
        schema lives there).
    :param config: reconciliation configuration (PSPs, mapping); ``ReconConfig.load()`` when
        omitted.
    """

    conn_name_attr = "billing_gateway_conn_id"
    default_conn_name = BILLING_GATEWAY_CONN_ID
    conn_type = "billing_gateway"
    hook_name = "Billing Gateway incidents (PostgreSQL)"

    def __init__(self, *args: Any, billing_gateway_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.billing_gateway_conn_id = billing_gateway_conn_id

    @cached_property
    def gateway(self) -> BillingGatewayHook:
        """The gateway hook on the same connection: PSP checks and divergence figures."""
        from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook

        return BillingGatewayHook(billing_gateway_conn_id=self.billing_gateway_conn_id, config=self.config)

    # -- incidents --------------------------------------------------------------------------
    def open_incident(
        self,
        psp: str,
        *,
        incident_id: str | None = None,
        window: Window,
        reason: str,
        actor: str,
        run_id: str | None = None,
        figures: Figures | DivergenceSummary | None = None,
        psp_ticket: str | None = None,
        eta_resumption: datetime | None = None,
    ) -> str:
        """Open an incident for ``psp`` and return its id (``INCIDENT-<n>`` from the sequence
        when ``incident_id`` is not given).

        One open incident per PSP (fire and clear are separate conditions): when the PSP
        already has one that is not closed, :class:`IncidentAlreadyOpenError` names it. Every
        input is checked before anything is written.

        :param psp: a known PSP (configured, or present in ``payment_intents``).
        :param incident_id: ``INCIDENT-<number>`` chosen by the caller (e.g. the incident
            tool's id); generated when omitted.
        :param window: the affected window ``[start, end)``.
        :param reason: why the incident is opened (alert reason, analyst's words).
        :param actor: who opens it.
        :param run_id: the Airflow run that opens it.
        :param figures: divergence at opening: a :class:`Figures`, a divergence summary or an
            alert payload (the watch's), whose per-kind figures — per currency, in each
            currency's own minor units, and converted — are kept in the opening event for the
            closing report. The rates the figures were converted with are kept with them.
        :param psp_ticket: the PSP's ticket, if already open.
        :param eta_resumption: estimated resumption of reconciliation, if known.
        """
        import psycopg

        check_psp_name(psp)
        if incident_id is not None:
            check_incident_id(incident_id)
        if not isinstance(window, Window):
            raise IncidentInputError(f"the incident window must be a Window, got {window!r}")
        reason = check_text(reason, what="reason")
        actor = check_text(actor, what="actor", max_length=200)
        ticket = check_text(psp_ticket, what="PSP ticket", max_length=200, required=False) or None
        eta = check_aware(eta_resumption, what="estimated resumption") if eta_resumption else None
        numbers = Figures.coerce(figures)
        details: dict[str, Any] = {"window": window.as_dict(), "reason": reason, **_kind_split(figures)}
        self.gateway.resolve_psp(psp)  # UnknownPspError before anything is written

        try:
            with self.connect() as conn, conn.transaction():
                # openers of the same PSP queue here; the unique partial index is the backstop
                conn.execute(queries.advisory_xact_lock_query(), {"lock_key": f"recon.incident:{psp}"})
                self._refuse_second_open(conn, psp)
                if incident_id is None:
                    incident_id = self._next_incident_id(conn)
                elif conn.execute(
                    "SELECT 1 FROM recon.incidents WHERE incident_id = %s", (incident_id,)
                ).fetchone():
                    raise IncidentExistsError(
                        f"incident {incident_id} already exists; choose another id or leave it empty "
                        "to have one generated"
                    )
                conn.execute(
                    "INSERT INTO recon.incidents (incident_id, psp, state, window_start, window_end, reason,"
                    " psp_ticket, eta_resumption, divergent_amount_minor, divergent_count, divergence_pct,"
                    " currency_figures, opened_by) VALUES (%(id)s, %(psp)s, 'open', %(ws)s, %(we)s,"
                    " %(reason)s, %(ticket)s, %(eta)s, %(amount)s, %(count)s, %(pct)s, %(currency_figures)s,"
                    " %(actor)s)",
                    {
                        "id": incident_id,
                        "psp": psp,
                        "ws": window.start,
                        "we": window.end,
                        "reason": reason,
                        "ticket": ticket,
                        "eta": eta,
                        **self._figure_params(numbers),
                        "actor": actor,
                    },
                )
                self._insert_event(
                    conn,
                    incident_id,
                    step=Step.OPENED,
                    outcome=reason,
                    actor=actor,
                    run_id=run_id,
                    figures=numbers,
                    details=details,
                )
        except psycopg.errors.UniqueViolation as exc:
            # someone wrote recon.incidents without the advisory lock: say who holds the PSP
            if "incidents_one_open_per_psp" in str(exc):
                with self.connect(autocommit=True) as conn:
                    self._refuse_second_open(conn, psp)
            raise IncidentExistsError(f"incident {incident_id} already exists") from None
        self.log.info("Opened %s for PSP %s (window %s) by %s", incident_id, psp, window, actor)
        return incident_id

    @staticmethod
    def _open_incident(conn: psycopg.Connection, psp: str) -> Incident | None:
        """The PSP's incident that is not closed, if any (at most one)."""
        row = (
            by_name(conn)
            .execute(
                f"SELECT {INCIDENT_COLUMNS} FROM recon.incidents WHERE psp = %s AND state <> 'closed'"
                " ORDER BY opened_at DESC LIMIT 1",
                (psp,),
            )
            .fetchone()
        )
        return None if row is None else incident_from_row(row)

    def _refuse_second_open(self, conn: psycopg.Connection, psp: str) -> None:
        current = self._open_incident(conn, psp)
        if current is not None:
            raise IncidentAlreadyOpenError(
                f"PSP {psp} already has an open incident, {current.incident_id} ({current.state.value}, "
                f"opened {format_time(current.opened_at)} by {current.opened_by}); record the new "
                "findings on it, or close it before opening another",
                open_incident_id=current.incident_id,
            )

    def _next_incident_id(self, conn: psycopg.Connection) -> str:
        for _attempt in range(_MAX_ID_SKIPS):
            (number,) = conn.execute("SELECT nextval('recon.incident_number_seq')").fetchone()
            candidate = format_incident_id(number)
            # ids given by hand (e.g. INCIDENT-472 from the incident tool) are skipped
            if not conn.execute(
                "SELECT 1 FROM recon.incidents WHERE incident_id = %s", (candidate,)
            ).fetchone():
                return candidate
        raise IncidentExistsError(
            "could not find a free INCIDENT-<n> number; give the incident id explicitly"
        )

    @staticmethod
    def _figure_params(figures: Figures | None) -> dict[str, Any]:
        from psycopg.types.json import Jsonb

        return {
            "amount": None if figures is None else figures.divergent_amount_minor,
            "count": None if figures is None else figures.divergent_count,
            "pct": None if figures is None else figures.divergence_pct,
            # the reporting currency of the amount, each currency's own figures and the rates
            # used: every decision recorded with figures keeps its rates (DESIGN 3a)
            "currency_figures": None if figures is None else Jsonb(figures.currency_figures()),
        }

    def get(self, incident_id: str) -> Incident:
        check_incident_id(incident_id)
        with self.connect(autocommit=True) as conn:
            row = (
                by_name(conn)
                .execute(
                    f"SELECT {INCIDENT_COLUMNS} FROM recon.incidents WHERE incident_id = %s", (incident_id,)
                )
                .fetchone()
            )
        if row is None:
            raise IncidentNotFoundError(f"incident {incident_id} does not exist")
        return incident_from_row(row)

    def open_incident_for(self, psp: str) -> Incident | None:
        """The PSP's incident that is not closed, if any (at most one)."""
        check_psp_name(psp)
        with self.connect(autocommit=True) as conn:
            return self._open_incident(conn, psp)

    def fire_watch_on_open_incident(
        self,
        psp: str,
        *,
        actor: str,
        run_id: str,
        event: Callable[[OpenIncidentActivity], tuple[str, Mapping[str, Any]]],
        figures: Any = None,
    ) -> tuple[OpenIncidentActivity, bool, str] | None:
        """The divergence watch's alert on the PSP's open incident: decide again, under the
        PSP's incident lock, whether it fires there
        (:func:`~airflow_recon_provider.reconciliation.detection.watch_fires_on_open_incident`:
        the trigger's decision may be stale by now), and when it does record why on the timeline
        (step ``detection.watch_alert``), which keeps every later alert quiet.

        A retry of the same watch run finds its own event: it fires again (the remediation it
        starts has a run id derived from the incident, so no second remediation) and records
        nothing more.

        :param psp: the PSP that breached the alert rule.
        :param actor: the watch.
        :param run_id: the watch's run.
        :param event: the timeline's text and JSON-able details, given what was done about the
            incident.
        :param figures: the alert payload (its divergence goes with the event).
        :returns: ``(activity, fires, why)``; ``None`` when the PSP has no open incident.
        """
        from airflow_recon_provider.reconciliation.detection import (
            WATCH_ALERT_STEP,
            watch_fires_on_open_incident,
        )

        check_psp_name(psp)
        actor = check_text(actor, what="actor", max_length=200)
        run_id = check_text(run_id, what="run_id", max_length=250)
        numbers = Figures.coerce(figures)
        with self.connect() as conn, conn.transaction():
            # the same lock as opening the PSP's incident: watch runs and openers queue here
            conn.execute(queries.advisory_xact_lock_query(), {"lock_key": f"recon.incident:{psp}"})
            activity = queries.open_incident_activity(
                conn.execute(
                    queries.open_incident_activity_query(), queries.open_incident_activity_params(psp)
                ).fetchone()
            )
            if activity is None:
                return None
            if conn.execute(
                "SELECT 1 FROM recon.incident_events WHERE incident_id = %s AND step = %s AND run_id = %s",
                (activity.incident_id, WATCH_ALERT_STEP, run_id),
            ).fetchone():
                return activity, True, f"this watch run already fired on incident {activity.incident_id}"
            fires, why = watch_fires_on_open_incident(activity)
            if fires:
                outcome, details = event(activity)
                self._insert_event(
                    conn,
                    activity.incident_id,
                    step=WATCH_ALERT_STEP,
                    outcome=check_text(outcome, what="outcome"),
                    actor=actor,
                    run_id=run_id,
                    figures=numbers,
                    details=json_details(
                        {
                            **details,
                            "why": why,
                            "finance_dry_runs": sorted(activity.finance_dry_runs),
                        }
                    ),
                )
        return activity, fires, why

    def list_open(self) -> list[Incident]:
        """Incidents that are not closed, oldest first."""
        with self.connect(autocommit=True) as conn:
            rows = (
                by_name(conn)
                .execute(
                    f"SELECT {INCIDENT_COLUMNS} FROM recon.incidents WHERE state <> 'closed'"
                    " ORDER BY opened_at, incident_id"
                )
                .fetchall()
            )
        return [incident_from_row(r) for r in rows]

    def incidents_to_communicate(self) -> list[Incident]:
        """Incidents finance must still hear about: every incident not yet normalized, and
        those normalized whose final update has not been delivered yet."""
        with self.connect(autocommit=True) as conn:
            rows = (
                by_name(conn)
                .execute(
                    f"SELECT {INCIDENT_COLUMNS} FROM recon.incidents WHERE communication_done_at IS NULL"
                    " ORDER BY opened_at, incident_id"
                )
                .fetchall()
            )
        return [incident_from_row(r) for r in rows]

    def mark_communication_done(self, incident_id: str) -> None:
        check_incident_id(incident_id)
        with self.connect() as conn:
            conn.execute(
                "UPDATE recon.incidents SET communication_done_at = now() WHERE incident_id = %s",
                (incident_id,),
            )

    # -- timeline ---------------------------------------------------------------------------
    def record_event(
        self,
        incident_id: str,
        *,
        step: str,
        outcome: str,
        actor: str,
        run_id: str | None = None,
        figures: Figures | DivergenceSummary | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Append a step to the incident's timeline and return the event id.

        With ``figures``, the incident's current divergence figures are updated too
        (runbook: "Atualizar incidente com percentual de divergência"); the event and the
        incident keep them per currency with the rates used (``currency_figures``, DESIGN 3a).

        :param step: the runbook step (e.g. ``reprocess``, ``correction.apply``).
        :param outcome: what came of it, in words finance understands.
        :param actor: who executed it (a user, or the DAG).
        :param run_id: the Airflow run that executed it.
        :param figures: divergence at that moment.
        :param details: JSON-able extras (counts, ids, ``approved_by``...).
        """
        check_incident_id(incident_id)
        step = check_text(step, what="step", max_length=200)
        outcome = check_text(outcome, what="outcome")
        actor = check_text(actor, what="actor", max_length=200)
        numbers = Figures.coerce(figures)
        extras = json_details(details)
        with self.connect() as conn, conn.transaction():
            if not conn.execute(
                "SELECT 1 FROM recon.incidents WHERE incident_id = %s FOR UPDATE", (incident_id,)
            ).fetchone():
                raise IncidentNotFoundError(f"incident {incident_id} does not exist")
            event_id = self._insert_event(
                conn,
                incident_id,
                step=step,
                outcome=outcome,
                actor=actor,
                run_id=run_id,
                figures=numbers,
                details=extras,
            )
        return event_id

    def _insert_event(
        self,
        conn: psycopg.Connection,
        incident_id: str,
        *,
        step: str,
        outcome: str,
        actor: str,
        run_id: str | None,
        figures: Figures | None,
        details: Mapping[str, Any],
    ) -> int:
        from psycopg.types.json import Jsonb

        params = {
            "id": incident_id,
            "step": step,
            "outcome": outcome,
            "actor": actor,
            "run_id": run_id,
            "details": Jsonb(dict(details)),
            **self._figure_params(figures),
        }
        (event_id,) = conn.execute(
            "INSERT INTO recon.incident_events (incident_id, step, outcome, divergence_pct,"
            " divergent_amount_minor, divergent_count, currency_figures, actor, run_id, details) VALUES"
            " (%(id)s, %(step)s, %(outcome)s, %(pct)s, %(amount)s, %(count)s, %(currency_figures)s,"
            " %(actor)s, %(run_id)s, %(details)s) RETURNING id",
            params,
        ).fetchone()
        conn.execute(
            "UPDATE recon.incidents SET updated_at = now(),"
            " divergent_amount_minor = COALESCE(%(amount)s, divergent_amount_minor),"
            " divergent_count = COALESCE(%(count)s, divergent_count),"
            " divergence_pct = CASE WHEN %(amount)s::bigint IS NULL THEN divergence_pct ELSE %(pct)s END,"
            " currency_figures = CASE WHEN %(amount)s::bigint IS NULL THEN currency_figures"
            "   ELSE %(currency_figures)s::jsonb END"
            " WHERE incident_id = %(id)s",
            params,
        )
        return int(event_id)

    def transition(
        self,
        incident_id: str,
        to_state: str | IncidentState,
        *,
        actor: str,
        run_id: str | None = None,
        note: str = "",
        figures: Figures | DivergenceSummary | None = None,
    ) -> Incident:
        """Move the incident to ``to_state`` (:data:`TRANSITIONS` of the domain) and record it.

        :raises IllegalTransitionError: the move is not allowed (nothing is written).
        """
        check_incident_id(incident_id)
        target = parse_state(to_state)
        actor = check_text(actor, what="actor", max_length=200)
        note = check_text(note, what="note", required=False)
        numbers = Figures.coerce(figures)
        with self.connect() as conn, conn.transaction():
            row = (
                by_name(conn)
                .execute(
                    "SELECT state FROM recon.incidents WHERE incident_id = %s FOR UPDATE", (incident_id,)
                )
                .fetchone()
            )
            if row is None:
                raise IncidentNotFoundError(f"incident {incident_id} does not exist")
            current = IncidentState(row["state"])
            check_transition(incident_id, current, target)
            conn.execute(
                "UPDATE recon.incidents SET state = %(to)s, updated_at = now(),"
                " recovered_at = CASE WHEN %(to)s = 'recovered' THEN now() ELSE recovered_at END,"
                " closed_at = CASE WHEN %(to)s = 'closed' THEN now() ELSE closed_at END,"
                # a relapse reopens communication: finance hears again until it normalizes
                " communication_done_at = CASE WHEN %(to)s IN ('open', 'mitigating') THEN NULL"
                "   ELSE communication_done_at END"
                " WHERE incident_id = %(id)s",
                {"to": target.value, "id": incident_id},
            )
            self._insert_event(
                conn,
                incident_id,
                step=Step.STATE,
                outcome=_transition_text(current, target, note),
                actor=actor,
                run_id=run_id,
                figures=numbers,
                details={"from": current.value, "to": target.value},
            )
        self.log.info("%s: %s -> %s by %s", incident_id, current.value, target.value, actor)
        return self.get(incident_id)

    def set_psp_ticket(
        self, incident_id: str, ticket: str, *, actor: str, run_id: str | None = None
    ) -> Incident:
        """Record the PSP's ticket number on the incident (runbook, Comunicação: "Registrar
        número do ticket do PSP (se houver) no incidente").

        A second number replaces the first; both stay on the timeline (event step
        ``incident.psp_ticket``, details ``psp_ticket`` and ``replaces``).

        :param ticket: the number the PSP gave (:func:`check_ticket_number`).
        :param actor: who typed it (the HITL entry's respondent, the dashboard's user).
        :param run_id: the Airflow run that asked for it, if any.
        :raises PspTicketNumberError: not a ticket number (nothing is written).
        :raises IllegalTransitionError: the incident is closed (nothing is written).
        """
        from airflow_recon_provider.reconciliation.psp_ticket import check_ticket_number

        number = check_ticket_number(ticket, required=True)
        return self._set_field(
            incident_id,
            "psp_ticket",
            number,
            step=Step.PSP_TICKET,
            outcome=_people(lambda: _("PSP ticket %(number)s", number=number)),
            actor=actor,
            run_id=run_id,
        )

    def set_eta(self, incident_id: str, eta: datetime, *, actor: str, run_id: str | None = None) -> Incident:
        """Record the estimated resumption of reconciliation (runbook, Ações de Contenção)."""
        eta = check_aware(eta, what="estimated resumption")
        return self._set_field(
            incident_id,
            "eta_resumption",
            eta,
            step=Step.ETA,
            outcome=_people(
                lambda: _("reconciliation expected to resume at %(when)s", when=format_time(eta))
            ),
            actor=actor,
            run_id=run_id,
        )

    def _set_field(
        self,
        incident_id: str,
        column: str,
        value: Any,
        *,
        step: str,
        outcome: str,
        actor: str,
        run_id: str | None,
    ) -> Incident:
        from psycopg import sql

        check_incident_id(incident_id)
        actor = check_text(actor, what="actor", max_length=200)
        assert column in {"psp_ticket", "eta_resumption"}  # fixed columns of the recon schema
        with self.connect() as conn, conn.transaction():
            row = (
                by_name(conn)
                .execute(
                    "SELECT state, psp_ticket FROM recon.incidents WHERE incident_id = %s FOR UPDATE",
                    (incident_id,),
                )
                .fetchone()
            )
            if row is None:
                raise IncidentNotFoundError(f"incident {incident_id} does not exist")
            if row["state"] == IncidentState.CLOSED.value:
                raise IllegalTransitionError(f"incident {incident_id} is closed; it cannot be changed")
            extra: dict[str, Any] = {}
            previous = row["psp_ticket"]
            if column == "psp_ticket" and previous and previous != value:
                # a second number replaces the first; the timeline keeps both
                extra["replaces"] = previous
                outcome += " " + _people(lambda: _("(replaces %(previous)s)", previous=previous))
            conn.execute(
                sql.SQL(
                    "UPDATE recon.incidents SET {} = %s, updated_at = now() WHERE incident_id = %s"
                ).format(sql.Identifier(column)),
                (value, incident_id),
            )
            self._insert_event(
                conn,
                incident_id,
                step=step,
                outcome=outcome,
                actor=actor,
                run_id=run_id,
                figures=None,
                details={column: value.isoformat() if isinstance(value, datetime) else value, **extra},
            )
        return self.get(incident_id)

    def timeline(self, incident_id: str) -> list[IncidentEvent]:
        """Every event of the incident, in the order it happened."""
        self.get(incident_id)  # IncidentNotFoundError for an unknown id, not an empty timeline
        return self.events_after(incident_id, 0)

    def events_after(self, incident_id: str, after_event_id: int) -> list[IncidentEvent]:
        check_incident_id(incident_id)
        with self.connect(autocommit=True) as conn:
            rows = (
                by_name(conn)
                .execute(
                    f"SELECT {_EVENT_COLUMNS} FROM recon.incident_events WHERE incident_id = %s AND id > %s"
                    " ORDER BY id",
                    (incident_id, after_event_id),
                )
                .fetchall()
            )
        return [_event(r) for r in rows]

    def corrections(self, incident_id: str) -> list[CorrectionRecord]:
        """The transactions corrected under this incident, with who requested and approved."""
        check_incident_id(incident_id)
        with self.connect(autocommit=True) as conn:
            rows = (
                by_name(conn)
                .execute(
                    "SELECT transaction_id, provider_reference, transaction_type, kind, amount_minor,"
                    " requested_by, approved_by, run_id, applied_at, before, after, currency"
                    " FROM recon.corrections WHERE incident_id = %s ORDER BY applied_at, id",
                    (incident_id,),
                )
                .fetchall()
            )
        return [_correction(r) for r in rows]

    # -- figures and the closing report -------------------------------------------------------
    def current_figures(self, incident: Incident) -> tuple[Figures | None, str]:
        """Divergence now over the incident's window (``BillingGatewayHook.summary``), and a
        note saying why they are not fresh when they are not (no window, PSP no longer
        configured...): then the figures last recorded on the incident are returned."""
        recorded = incident.figures
        as_recorded = f"as last recorded, {format_time(incident.updated_at)}"
        if incident.window is None:
            return recorded, f"no affected window recorded; {as_recorded}" if recorded else "no window"
        try:
            summary = self.gateway.summary(incident.psp, incident.window)
        except ConnectionMissingError:
            raise  # no gateway database configured: nothing sensible to report
        except ReconError as exc:
            self.log.warning("%s: current figures unavailable: %s", incident.incident_id, exc)
            return recorded, f"current figures unavailable ({exc}); {as_recorded}"
        return Figures.from_summary(summary), ""

    def current_recovery(
        self, incident: Incident, *, payments_ledger_conn_id: str = PAYMENTS_LEDGER_CONN_ID
    ) -> tuple[dict[str, Any] | None, str]:
        """The runbook's three recovery criteria over the incident's window, checked now (the
        recovery sensor's own check: divergence, latest cycles, the ledger against the PSP's
        statement), or ``None`` and why they could not be checked; a finance update says so
        rather than failing."""
        import asyncio

        from airflow_recon_provider.triggers.recovery import RecoveryTrigger

        if incident.window is None:
            return None, "no affected window recorded"
        trigger = RecoveryTrigger(
            psp=incident.psp,
            window_start=incident.window.start.isoformat(),
            window_end=incident.window.end.isoformat(),
            conn_id=self.billing_gateway_conn_id,
            ledger_conn_id=payments_ledger_conn_id,
        )
        try:
            return asyncio.run(trigger.check()), ""
        except ReconError as exc:
            self.log.warning("%s: recovery criteria not checked: %s", incident.incident_id, exc)
            return None, str(exc)
        except DependencyUnavailableError as exc:
            self.log.warning("%s: recovery criteria not checked, unavailable: %s", incident.incident_id, exc)
            return None, str(exc)
        except Exception as exc:  # e.g. no SELECT on the ledger: the update still goes out
            self.log.exception("%s: recovery criteria not checked", incident.incident_id)
            first = (str(exc).strip().splitlines() or [""])[0]
            return None, f"{type(exc).__name__}: {first}"

    def closing_report(self, incident_id: str, *, now: datetime | None = None) -> ClosingReport:
        """The closing report's content: timeline, corrections, deliveries and final numbers."""
        incident = self.get(incident_id)
        figures, note = self.current_figures(incident)
        return ClosingReport(
            incident=incident,
            events=tuple(self.events_after(incident_id, 0)),
            corrections=tuple(self.corrections(incident_id)),
            final_figures=figures,
            final_figures_note=note,
            generated_at=now or datetime.now(UTC),
            deliveries=self.delivery_stats(incident_id),
        )

    def attach_closing_report(
        self,
        incident_id: str,
        *,
        markdown: str,
        html: str,
        actor: str,
        run_id: str | None = None,
        artifacts: Sequence[Mapping[str, Any]] = (),
    ) -> int:
        """Store the closing report on the incident row and note it on the timeline, with
        the dashboard links of its published files (``ArtifactRecord.summary()``)."""
        check_incident_id(incident_id)
        actor = check_text(actor, what="actor", max_length=200)
        with self.connect() as conn, conn.transaction():
            updated = conn.execute(
                "UPDATE recon.incidents SET closing_report_md = %s, closing_report_html = %s,"
                " updated_at = now() WHERE incident_id = %s",
                (markdown, html, incident_id),
            ).rowcount
            if not updated:
                raise IncidentNotFoundError(f"incident {incident_id} does not exist")
            return self._insert_event(
                conn,
                incident_id,
                step=Step.CLOSING_REPORT,
                outcome=_people(lambda: _("closing report attached"))
                + (
                    " (" + ", ".join(f"{a.get('name')}: {a.get('link')}" for a in artifacts) + ")"
                    if artifacts
                    else ""
                ),
                actor=actor,
                run_id=run_id,
                figures=None,
                details={"artifacts": [dict(a) for a in artifacts], "markdown_chars": len(markdown)},
            )

    def stored_closing_report(self, incident_id: str) -> tuple[str | None, str | None]:
        """The closing report attached to the incident: ``(markdown, html)``."""
        check_incident_id(incident_id)
        with self.connect(autocommit=True) as conn:
            row = (
                by_name(conn)
                .execute(
                    "SELECT closing_report_md, closing_report_html FROM recon.incidents"
                    " WHERE incident_id = %s",
                    (incident_id,),
                )
                .fetchone()
            )
        if row is None:
            raise IncidentNotFoundError(f"incident {incident_id} does not exist")
        return row["closing_report_md"], row["closing_report_html"]

    # -- the notification outbox (kept here for callers written before the split) -------------
    @cached_property
    def outbox(self) -> NotificationOutboxHook:
        """The notification outbox on the same connection (``recon.notifications``)."""
        return NotificationOutboxHook(
            billing_gateway_conn_id=self.billing_gateway_conn_id, config=self.config
        )

    def delivery(self, dedup_key: str, channel: str) -> Delivery | None:
        """:meth:`NotificationOutboxHook.delivery`."""
        return self.outbox.delivery(dedup_key, channel)

    def prepare_delivery(self, **kwargs: Any) -> Delivery:
        """:meth:`NotificationOutboxHook.prepare_delivery`."""
        return self.outbox.prepare_delivery(**kwargs)

    def mark_sent(self, delivery_id: int, response: Mapping[str, Any] | None = None) -> None:
        """:meth:`NotificationOutboxHook.mark_sent`."""
        self.outbox.mark_sent(delivery_id, response)

    def mark_failed(self, delivery_id: int, error: str) -> None:
        """:meth:`NotificationOutboxHook.mark_failed`."""
        self.outbox.mark_failed(delivery_id, error)

    def supersede(self, delivery_ids: Iterable[int], *, by: int) -> int:
        """:meth:`NotificationOutboxHook.supersede`."""
        return self.outbox.supersede(delivery_ids, by=by)

    def last_sent(
        self, incident_id: str, channel: str, kinds: Sequence[str] = ("update", "normalized")
    ) -> Delivery | None:
        """:meth:`NotificationOutboxHook.last_sent`."""
        return self.outbox.last_sent(incident_id, channel, kinds)

    def unsent(self, **kwargs: Any) -> list[Delivery]:
        """:meth:`NotificationOutboxHook.unsent`."""
        return self.outbox.unsent(**kwargs)

    def last_update_slot(self, incident_id: str, *, before: datetime) -> datetime | None:
        """:meth:`NotificationOutboxHook.last_update_slot`."""
        return self.outbox.last_update_slot(incident_id, before=before)

    def deliveries(self, incident_id: str | None = None) -> list[Delivery]:
        """:meth:`NotificationOutboxHook.deliveries`."""
        return self.outbox.deliveries(incident_id)

    def delivery_stats(self, incident_id: str) -> dict[str, dict[str, int]]:
        """:meth:`NotificationOutboxHook.delivery_stats`."""
        return self.outbox.delivery_stats(incident_id)


__all__ = ["CHANNELS", "INCIDENT_COLUMNS", "Delivery", "IncidentHook", "incident_from_row"]
