"""Operators of the runbook's Investigação — Validar Escopo, Checar Jobs, Integridade de
Dados, Dependências Externas.

- :class:`ValidateScopeOperator` — "Identificar PSP afetado, período (timestamp) e tipo de
  divergência": validates a remediation request (the DAG's form or the divergence watch's
  conf) with a specific error per problem, and decides the incident the run records its
  steps on: the one the request names, else the PSP's open incident, else a new one (never
  in a dry run).
- :class:`ReconciliationSnapshotOperator` — "Gerar snapshot diretamente do banco": the
  runbook's snapshot query for the PSP and window streamed to a CSV artifact in the artifact
  store (its dashboard link goes to XCom, never the rows), beside the divergence summary,
  the state of the window's reconciliation cycles (``fetch_psp_statements`` /
  ``match_transactions``), the ledger's status counts side by side with the gateway's, the
  error summary of
  ``reconciliation.events`` and the PSP's health — each optional source reported as
  ``not configured`` when its connection is not defined, never a failure.

Hooks are imported inside ``execute`` so DAG files parse fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.names import (
    AIRFLOW_API_CONN_ID,
    BILLING_GATEWAY_CONN_ID,
    PAYMENTS_LEDGER_CONN_ID,
    RECONCILIATION_KAFKA_CONN_ID,
)
from airflow_recon_provider.operators._context import blank, run_actor, run_id_of
from airflow_recon_provider.operators._scoped import ScopedOperator
from airflow_recon_provider.reconciliation.i18n import N_, _, pgettext

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from airflow.sdk import Context

    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.hooks.remediation_lease import LeaseClaim
    from airflow_recon_provider.reconciliation.remediation import IncidentPlan, RemediationRequest
    from airflow_recon_provider.reconciliation.report import DivergenceSummary
    from airflow_recon_provider.reconciliation.window import Window

#: what an optional source that is not configured reports
NOT_CONFIGURED = "not configured"
#: how the scope step's lines on a run's note begin (the dashboard's recent runs show them)
SCOPE_NOTE_PREFIX = N_("Validate Scope:")
REFUSED_NOTE_PREFIX = N_("Refused at Validate Scope:")


def note_prefixes(*, refused_only: bool = False) -> tuple[str, ...]:
    """How the scope step's lines on a run's note begin, in every language people may have
    configured (a note written in one language is recognised after a switch)."""
    from airflow_recon_provider.reconciliation.i18n import LANGUAGES, use_language

    prefixes: list[str] = []
    for language in LANGUAGES:
        with use_language(language):
            prefixes.append(_(REFUSED_NOTE_PREFIX))
            if not refused_only:
                prefixes.append(_(SCOPE_NOTE_PREFIX))
    return tuple(prefixes)


def is_refusal_note(note: str | None) -> bool:
    """The note says the scope step refused the request (in any language)."""
    return bool(note) and any(prefix in str(note) for prefix in note_prefixes(refused_only=True))


class ValidateScopeOperator(ScopedOperator):
    """Validate a remediation request and choose its incident (runbook, Validar Escopo).

    Every field is checked before anything is read or written, each problem with its own
    error (unknown PSP, missing window, end not after start, window over the configured
    maximum, unknown divergence kind, malformed incident id, incident of another PSP or
    closed). Then the incident: the request's (it must be of this PSP and not closed; an id
    that does not exist yet is opened with that id), else the PSP's open incident, else a
    new one — unless ``dry_run``: a dry run never opens an incident (it reports that a real
    run would). The request and the divergence figures go on the incident's timeline.

    Returns (XCom) the validated request, for every later step::

        {"psp", "psp_display_name", "window_start", "window_end" (UTC ISO),
         "divergence_kinds" (list), "divergence_kinds_csv", "psp_ticket_kinds_csv",
         "incident_id", "incident_action" (given | attached | opened | would_open | none),
         "dry_run", "after_release", "reason", "requested_by", "run_id",
         "lease" (with ``lease``, a real run: {"psp", "dag_id", "run_id", "incident_id",
                  "outcome" (acquired | reentered | taken_over), "acquired_at",
                  "taken_over_from"}; else None),
         "figures": {"gateway_count", "gateway_amount_minor", "divergent_count",
                     "divergent_amount_minor", "divergence_pct", "by_kind" (amounts converted to
                     "reporting_currency"), "by_currency", "fx_rates", "unconverted_currencies"}}

    :param psp: the PSP (templated).
    :param window_start: start of the affected window, ISO 8601 with offset (templated).
    :param window_end: end of the window, exclusive (templated); may be empty when
        ``window_hours`` is given.
    :param window_hours: the window as a duration in whole hours from its start (templated;
        the form's alternative to the end; both given: they must agree).
    :param divergence_kinds: kinds in scope: a list, ``"a,b"`` or a rendered list (templated);
        empty means all.
    :param incident_id: ``INCIDENT-<n>`` (templated); empty: the PSP's open incident or a new one.
    :param dry_run: investigate and propose only (templated, ``true``/``false``).
    :param after_release: the break followed a release of the worker (templated).
    :param reason: why, in the requester's words (templated).
    :param open_incident: open an incident when the PSP has none (``False`` for read-only
        runs; templated, e.g. ``"{{ params.action == 'pause' }}"``). Never in a dry run.
    :param lease: one real run per PSP at a time: a real (not dry) run takes the PSP's
        remediation lease while it chooses the incident, and is refused
        (:class:`~airflow_recon_provider.reconciliation.remediation_lease.RemediationInProgressError`,
        naming the running run and its incident) when another run that is still running holds
        it; the DAG gives it back in its last task (``release_lease_step``). XCom ``lease``.
    :param billing_gateway_conn_id: the gateway database (``recon`` schema; the primary).
    :param run_note: write the outcome on the run's note, where people look: the request in
        words with the window in UTC and in America/Sao_Paulo, or why it was refused (in
        Brazilian Portuguese; nothing was changed). Written through Airflow's REST API
        (connection ``airflow_api``); a note that cannot be written is a warning in the log,
        never a failure of the run.
    :param airflow_api_conn_id: the api-server's HTTP connection, for the note.
    """

    template_fields: Sequence[str] = (
        "psp",
        "window_start",
        "window_end",
        "window_hours",
        "divergence_kinds",
        "incident_id",
        "dry_run",
        "after_release",
        "reason",
        "open_incident",
    )
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        psp: str,
        window_start: str | datetime | None,
        window_end: str | datetime | None,
        window_hours: int | str | None = None,
        divergence_kinds: Sequence[str] | str | None = None,
        incident_id: str | None = None,
        dry_run: bool | str = True,
        after_release: bool | str = False,
        reason: str | None = None,
        open_incident: bool | str = True,
        lease: bool = False,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        run_note: bool = True,
        airflow_api_conn_id: str = AIRFLOW_API_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.psp = psp
        self.lease = lease
        self.window_start = window_start
        self.window_end = window_end
        self.window_hours = window_hours
        self.run_note = run_note
        self.airflow_api_conn_id = airflow_api_conn_id
        self.divergence_kinds = divergence_kinds
        self.incident_id = incident_id
        self.dry_run = dry_run
        self.after_release = after_release
        self.reason = reason
        self.open_incident = open_incident
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.i18n import language_scope
        from airflow_recon_provider.reconciliation.errors import ReconError

        with language_scope():  # [recon] language: what the note and the refusals say
            try:
                return self._validate_and_attach(context)
            except ReconError as exc:
                # where people look: the run's note (and so the dashboard's recent runs), in words
                self._write_note(
                    context,
                    _(REFUSED_NOTE_PREFIX)
                    + " "
                    + _(
                        "%(reason)s. Nothing was changed: correct the request and trigger it again.",
                        reason=str(exc),
                    ),
                )
                raise

    def _validate_and_attach(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.hooks.incidents import IncidentHook
        from airflow_recon_provider.reconciliation.figures import Figures
        from airflow_recon_provider.reconciliation.remediation import RemediationRequest
        from airflow_recon_provider.reconciliation.window import resolve_form_window, window_in_both_zones

        config = self.scope_config()
        # the window first, in words a person reads: missing, no zone, end before start,
        # end and duration that disagree, over the maximum
        window = resolve_form_window(
            self.window_start, self.window_end, self.window_hours, max_span=config.max_window
        )
        request = RemediationRequest.parse(
            psp=self.psp,
            window_start=window.start,
            window_end=window.end,
            kinds=self.divergence_kinds,
            incident_id=self.incident_id,
            dry_run=self.dry_run,
            after_release=self.after_release,
            reason=self.reason,
            max_window=config.max_window,
        )
        actor = run_actor(context)
        run_id = run_id_of(context)
        incidents = IncidentHook(billing_gateway_conn_id=self.billing_gateway_conn_id, config=config)
        psp_config = incidents.gateway.resolve_psp(request.psp)  # UnknownPspError, nothing written
        summary = incidents.gateway.summary(request.psp, request.window, kinds=request.kinds)
        with self._lease(context, request, actor=actor, run_id=run_id) as lease:
            plan = self._plan(incidents, request)
            incident_id = self._act(incidents, request, plan, summary, actor=actor, run_id=run_id)
            if lease is not None:
                lease.incident_id = incident_id
        description = request.describe(actor)
        mode = _("dry run (nothing is paused, reprocessed or applied)") if request.dry_run else _("real run")
        summary_line = (
            _(SCOPE_NOTE_PREFIX)
            + " "
            + _(
                "PSP %(psp)s, window %(window)s; %(mode)s; incident %(incident)s; requested by %(actor)s.",
                psp=psp_config.display_name,
                window=window_in_both_zones(request.window),
                mode=mode,
                incident=incident_id or pgettext("incident", "none"),
                actor=actor,
            )
        )
        self.log.info("%s", summary_line)
        self._write_note(context, summary_line)
        if incident_id is not None:
            from airflow_recon_provider.reconciliation.remediation import RemediationStep

            incidents.record_event(
                incident_id,
                step=RemediationStep.SCOPE,
                outcome=description,
                actor=actor,
                run_id=run_id,
                figures=summary,
                details={**request.as_dict(), "incident_action": plan.action.value},
            )
        self.log.info("%s", description)
        self.log.info(
            "Incident: %s (%s); divergence now: %s",
            incident_id or "none",
            plan.action.value,
            Figures.from_summary(summary).describe(),
        )
        if request.dry_run:
            self.log.info("DRY RUN: this run investigates and proposes corrections; it changes nothing")
        return {
            **request.as_dict(),
            "psp_display_name": psp_config.display_name,
            "incident_id": incident_id,
            "incident_action": plan.action.value,
            "requested_by": actor,
            "run_id": run_id,
            "figures": _figures(summary),
            "lease": lease.as_dict() if lease is not None else None,
        }

    def _write_note(self, context: Context, text: str) -> None:
        """Put ``text`` on the run's note, keeping what a person wrote there before (a note of
        an earlier try of this step is replaced)."""
        if not self.run_note:
            return
        ti = context.get("ti")
        run_id = run_id_of(context)
        dag_id = getattr(ti, "dag_id", None)
        if not run_id or not dag_id:
            return
        try:
            from airflow_recon_provider.hooks.airflow_api import AirflowApiHook

            hook = AirflowApiHook(airflow_api_conn_id=self.airflow_api_conn_id, max_attempts=2)
            try:
                current = str(hook.dag_run(dag_id, run_id).get("note") or "").strip()
                kept = [
                    part
                    for part in current.split("\n\n")
                    if part.strip() and not part.startswith(note_prefixes())
                ]
                hook.set_run_note(dag_id, run_id, "\n\n".join([*kept, text]))
            finally:
                hook.close()
        except Exception as exc:  # a courtesy to people: never the reason a run fails
            self.log.warning(
                "Could not write the run's note through connection %r (%s: %s); the note would have been: %s",
                self.airflow_api_conn_id,
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
                text,
            )

    def _lease(
        self, context: Context, request: RemediationRequest, *, actor: str, run_id: str | None
    ) -> AbstractContextManager[LeaseClaim | None]:
        """The PSP's remediation lease for a real run (refused while another run holds it); a
        dry run never takes it."""
        from contextlib import nullcontext

        if not self.lease or request.dry_run:
            return nullcontext()
        from airflow_recon_provider.hooks.remediation_lease import RemediationLeaseHook

        hook = RemediationLeaseHook(billing_gateway_conn_id=self.billing_gateway_conn_id)
        return hook.claim(request.psp, dag_id=context["ti"].dag_id, run_id=run_id, actor=actor)

    def _plan(self, incidents: IncidentHook, request: RemediationRequest) -> IncidentPlan:
        from airflow_recon_provider.reconciliation.incidents import IncidentNotFoundError
        from airflow_recon_provider.reconciliation.remediation import plan_incident

        requested = None
        if request.incident_id:
            try:
                requested = incidents.get(request.incident_id)
            except IncidentNotFoundError:
                requested = None
        return plan_incident(
            psp=request.psp,
            requested_id=request.incident_id,
            requested=requested,
            open_for_psp=incidents.open_incident_for(request.psp),
            dry_run=request.dry_run,
            may_open=self.flag("open_incident"),
        )

    def _act(
        self,
        incidents: IncidentHook,
        request: RemediationRequest,
        plan: IncidentPlan,
        summary: DivergenceSummary,
        *,
        actor: str,
        run_id: str | None,
    ) -> str | None:
        if not plan.opens:
            return plan.incident_id
        reason = request.reason or f"remediation requested by {actor}"
        return incidents.open_incident(
            request.psp,
            incident_id=plan.incident_id,
            window=request.window,
            reason=reason,
            actor=actor,
            run_id=run_id,
            figures=summary,
        )


def _figures(summary: DivergenceSummary) -> dict[str, Any]:
    data = summary.as_dict()
    keep = (
        "gateway_count",
        "gateway_amount_minor",
        "divergent_count",
        "divergent_amount_minor",
        "divergence_pct",
        "by_kind",
        "lag_cycles",
        "alert",
        "recovered",
        # the amounts above are converted to this currency; each currency's own figures and
        # the rates used go with them (DESIGN 3a)
        "reporting_currency",
        "by_currency",
        "fx_rates",
        "unconverted_currencies",
    )
    return {key: data[key] for key in keep}


def _optional(what: str, call: Callable[[], dict[str, Any]], log: Any) -> dict[str, Any]:
    """Run an optional check: a missing connection is "not configured", any other problem
    is reported as unavailable (a finding of the investigation), never a failure."""
    from airflow_recon_provider.reconciliation.errors import ConnectionMissingError

    try:
        return {"status": "ok", **call()}
    except ConnectionMissingError as exc:
        log.info("%s: not configured (%s)", what, exc)
        return {"status": NOT_CONFIGURED, "detail": str(exc)}
    except Exception as exc:
        log.warning("%s: unavailable: %s: %s", what, type(exc).__name__, exc)
        return {"status": "unavailable", "detail": f"{type(exc).__name__}: {exc}"}


class ReconciliationSnapshotOperator(ScopedOperator):
    """The runbook's investigation of a PSP and window, in one task (runbook, Investigação).

    1. Snapshot (Validar Escopo): the runbook's query — provider reference, transaction type,
       status, amount, processed at, for the PSP's gateway transactions created in the
       window — streamed with COPY to ``snapshot_<psp>.csv`` in the artifact store
       (``<base>/<dag_id>/<run_id>/``, see :mod:`airflow_recon_provider.artifacts`), recorded
       in ``recon.artifacts``; a retry that sees other rows keeps the first try's file and
       stores its own as ``snapshot_<psp>.try<N>.csv``.
    2. Divergence summary of the window (figures and per kind).
    3. Checar Jobs: the latest state of each reconciliation cycle of the window
       (``payment_reconciliation_logs``, written by ``fetch_psp_statements`` /
       ``match_transactions``) and the failed ones.
    4. Integridade de Dados: ``ledger.transactions`` status counts beside the gateway's
       (connection ``payments_ledger_db``), and the error events of the PSP in
       ``reconciliation.events`` (connection ``reconciliation_kafka``).
    5. Dependências Externas: the PSP's ``/status`` (connection ``psp_<name>``).
    6. Checar Jobs, "coletar logs": when cycles of the window failed, the error lines of the
       failed tries of ``fetch_psp_statements`` / ``match_transactions`` through Airflow's REST
       API (connection ``airflow_api``), secrets masked, in ``failed_task_logs_<psp>.md`` beside
       the snapshot and on the timeline
       (:func:`~airflow_recon_provider.operators.task_logs.collect_failed_task_logs`); the API
       unavailable or not configured is said there, never a failure.

    Sources 4 and 5 are optional: a connection that is not defined is reported as
    ``"not configured"``, a source that does not answer as ``"unavailable"``; neither fails
    the task. A window without any gateway transaction or statement line is the outcome
    ``no_data``, said as such. The step and its figures go on the incident's timeline.

    Returns (XCom; never the rows)::

        {"psp", "window_start", "window_end", "outcome" (no_data | divergent | clean),
         "snapshot": {"id", "name", "link", "size_bytes", "sha256", ..., "rows"},
         "summary": {...}, "cycles": {...},
         "ledger": {"status", ...}, "kafka": {"status", ...}, "psp_health": {"status", ...},
         "task_logs": {"status" (no_failed_cycles | collected | not_configured | unavailable),
                       "reason", "tries", "artifact", ...},
         "incident_id"}

    :param psp: the PSP (templated).
    :param window_start: start of the window, ISO 8601 with offset (templated).
    :param window_end: end of the window, exclusive (templated); may be empty when
        ``window_hours`` is given.
    :param window_hours: the window as a duration in whole hours from its start (templated;
        the form's alternative to the end; both given: they must agree).
    :param divergence_kinds: kinds of the summary (templated); empty: all.
    :param incident_id: the incident to record the step on (templated); empty: none.
    :param artifacts_dir: another artifact store base (a directory or a URL such as
        ``s3://bucket/prefix``) than ``[recon] artifacts_base_url`` (templated).
    :param billing_gateway_conn_id: the gateway database (a replica works for the reads,
        the incident event goes to this connection too).
    :param payments_ledger_conn_id: the ledger database.
    :param kafka_conn_id: the Kafka cluster of ``reconciliation.events``.
    :param kafka_topic: the events topic.
    :param psp_conn_id: the PSP API; default ``psp_<psp>``.
    :param kafka_timeout: seconds the Kafka inspection may take.
    :param health_timeout: seconds the PSP health check may take.
    :param airflow_api_conn_id: Airflow's REST API (the api-server), to read the failed tries'
        logs of the window's failed cycles.
    """

    template_fields: Sequence[str] = (
        "psp",
        "window_start",
        "window_end",
        "divergence_kinds",
        "incident_id",
        "artifacts_dir",
    )
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        psp: str,
        window_start: str | datetime,
        window_end: str | datetime,
        divergence_kinds: Sequence[str] | str | None = None,
        incident_id: str | None = None,
        artifacts_dir: str | None = None,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        payments_ledger_conn_id: str = PAYMENTS_LEDGER_CONN_ID,
        kafka_conn_id: str = RECONCILIATION_KAFKA_CONN_ID,
        kafka_topic: str = "reconciliation.events",
        psp_conn_id: str | None = None,
        kafka_timeout: float = 30.0,
        health_timeout: float = 10.0,
        airflow_api_conn_id: str = AIRFLOW_API_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.psp = psp
        self.airflow_api_conn_id = airflow_api_conn_id
        self.window_start = window_start
        self.window_end = window_end
        self.divergence_kinds = divergence_kinds
        self.incident_id = incident_id
        self.artifacts_dir = artifacts_dir
        self.billing_gateway_conn_id = billing_gateway_conn_id
        self.payments_ledger_conn_id = payments_ledger_conn_id
        self.kafka_conn_id = kafka_conn_id
        self.kafka_topic = kafka_topic
        self.psp_conn_id = psp_conn_id
        self.kafka_timeout = kafka_timeout
        self.health_timeout = health_timeout

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.artifacts import spool_file
        from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
        from airflow_recon_provider.operators._artifacts import publish_artifact
        from airflow_recon_provider.reconciliation.figures import Figures

        config = self.scope_config()
        psp = self.scope_psp()
        window = self.scope_window(config)
        kinds = self.scope_kinds()
        gateway = BillingGatewayHook(billing_gateway_conn_id=self.billing_gateway_conn_id, config=config)
        gateway.resolve_psp(psp)
        incident_id = self.scope_incident_id()
        name = f"snapshot_{psp}.csv"
        with spool_file(name) as spool:
            rows = gateway.snapshot_to_csv(psp, window, spool)
            # a fresh observation: a retry that read other rows keeps the first try's file
            artifact = publish_artifact(
                context,
                kind="snapshot",
                name=name,
                source=spool,
                psp=psp,
                incident_id=incident_id,
                base_url=self.optional_text("artifacts_dir"),
                billing_gateway_conn_id=self.billing_gateway_conn_id,
                keep_retries=True,
            )
        summary = gateway.summary(psp, window, kinds=kinds)
        cycles = self._cycles(gateway, psp, window)
        ledger = _optional("ledger integrity", lambda: self._ledger(gateway, psp, window), self.log)
        kafka = _optional("reconciliation.events", lambda: self._kafka(psp, window), self.log)
        health = _optional(f"PSP {psp} health", lambda: self._health(psp), self.log)

        if summary.gateway_count == 0 and summary.divergent_count == 0:
            outcome = "no_data"
            self.log.warning(
                "PSP %s window %s: no gateway transaction and no statement line at all; nothing to "
                "reconcile there (check the PSP and the window)",
                psp,
                window,
            )
        else:
            outcome = "divergent" if summary.divergent_count else "clean"
        self.log.info(
            "PSP %s window %s: snapshot of %d transaction(s): %s; divergence %s; "
            "ledger %s, kafka %s, PSP health %s",
            psp,
            window,
            rows,
            artifact.describe(),
            Figures.from_summary(summary).describe(),
            _status_word(ledger, "matches"),
            _status_word(kafka, "errors"),
            health.get("outcome", health["status"]),
        )
        result = {
            "psp": psp,
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
            "outcome": outcome,
            "snapshot": {**artifact.summary(), "rows": rows},
            "summary": _figures(summary),
            "cycles": cycles,
            "ledger": ledger,
            "kafka": kafka,
            "psp_health": health,
            "incident_id": incident_id,
        }
        self._record(context, result, summary)
        result["task_logs"] = self._task_logs(context, psp, window, cycles, incident_id)
        return result

    def _task_logs(
        self, context: Context, psp: str, window: Window, cycles: dict[str, Any], incident_id: str | None
    ) -> dict[str, Any]:
        """Checar Jobs, "coletar logs": the failed tries' error lines (never fails the task)."""
        from airflow_recon_provider.operators.task_logs import collect_failed_task_logs

        failed = [
            datetime.fromisoformat(c["cycle_start"])
            for c in cycles["not_successful"]
            if c["status"] == "failed"
        ]
        try:
            return collect_failed_task_logs(
                context,
                psp=psp,
                window=window,
                failed_cycles=failed,
                incident_id=incident_id,
                airflow_api_conn_id=self.airflow_api_conn_id,
                billing_gateway_conn_id=self.billing_gateway_conn_id,
                artifacts_base_url=self.optional_text("artifacts_dir"),
                log=self.log,
            )
        except Exception as exc:
            self.log.warning("failed task logs of PSP %s not collected: %s: %s", psp, type(exc).__name__, exc)
            return {"psp": psp, "status": "error", "reason": f"{type(exc).__name__}: {exc}", "tries": []}

    # -- the sources ---------------------------------------------------------------------------
    @staticmethod
    def _cycles(gateway: BillingGatewayHook, psp: str, window: Window) -> dict[str, Any]:
        statuses = gateway.cycle_statuses(psp, window)
        expected = len(window.cycles())
        by_status: dict[str, int] = {}
        for cycle in statuses:
            by_status[cycle.status] = by_status.get(cycle.status, 0) + 1
        return {
            "expected": expected,
            "recorded": len(statuses),
            "by_status": by_status,
            "not_successful": [
                {"cycle_start": c.cycle_start.isoformat(), "status": c.status}
                for c in statuses
                if c.status != "success"
            ],
        }

    def _ledger(self, gateway: BillingGatewayHook, psp: str, window: Window) -> dict[str, Any]:
        from airflow_recon_provider.hooks.payments_ledger import PaymentsLedgerHook

        ledger = PaymentsLedgerHook(
            payments_ledger_conn_id=self.payments_ledger_conn_id, config=gateway.config
        )
        comparison = ledger.compare_with_gateway(psp, window, gateway).as_dict()
        return {key: comparison[key] for key in ("matches", "statuses")}

    def _kafka(self, psp: str, window: Window) -> dict[str, Any]:
        from airflow_recon_provider.hooks.reconciliation_events import ReconciliationEventsHook

        inspection = ReconciliationEventsHook(self.kafka_conn_id, topic=self.kafka_topic).inspect(
            psp, window, timeout_s=self.kafka_timeout
        )
        data = inspection.as_dict()
        keep = ("topic", "total_read", "for_psp", "ok", "errors", "errors_by_type", "malformed", "truncated")
        return {key: data[key] for key in keep}

    def _health(self, psp: str) -> dict[str, Any]:
        from airflow_recon_provider.hooks.psp import PspHook

        hook = PspHook(None if blank(self.psp_conn_id) else self.psp_conn_id, timeout=self.health_timeout)
        return hook.check_health(psp).as_dict()

    def _record(self, context: Context, result: dict[str, Any], summary: DivergenceSummary) -> None:
        from airflow_recon_provider.hooks.incidents import IncidentHook
        from airflow_recon_provider.reconciliation.remediation import RemediationStep

        incident_id = result["incident_id"]
        if not incident_id:
            return
        from airflow_recon_provider.i18n import _, language_scope, ngettext
        from airflow_recon_provider.reconciliation import steps

        with language_scope():  # the timeline keeps the words in [recon] language
            snapshot = result["snapshot"]
            cycles = result["cycles"]["by_status"]
            outcome = "; ".join(
                (
                    ngettext(
                        "snapshot of %(num)s transaction (%(link)s)",
                        "snapshot of %(num)s transactions (%(link)s)",
                        int(snapshot["rows"]),
                        link=snapshot["link"],
                    ),
                    ngettext("%(num)s divergent key", "%(num)s divergent keys", summary.divergent_count),
                    _(
                        "cycles %(states)s",
                        states=steps.cycle_counts(cycles) if cycles else _("none recorded"),
                    ),
                    _("ledger %(state)s", state=_status_word(result["ledger"], "matches")),
                    _("kafka %(state)s", state=_status_word(result["kafka"], "errors")),
                    _(
                        "PSP health %(state)s",
                        state=steps.health_name(
                            result["psp_health"].get("outcome", result["psp_health"]["status"])
                        ),
                    ),
                )
            )
            if result["outcome"] == "no_data":
                outcome = _("no data in the window: %(findings)s", findings=outcome)
        IncidentHook(billing_gateway_conn_id=self.billing_gateway_conn_id).record_event(
            incident_id,
            step=RemediationStep.SNAPSHOT,
            outcome=outcome,
            actor=run_actor(context),
            run_id=run_id_of(context),
            figures=summary,
            details={
                "snapshot": result["snapshot"],
                "outcome": result["outcome"],
                "cycles": result["cycles"],
                "ledger_matches": result["ledger"].get("matches", result["ledger"]["status"]),
                "kafka_errors": result["kafka"].get("errors", result["kafka"]["status"]),
                "psp_health": result["psp_health"].get("outcome", result["psp_health"]["status"]),
            },
        )


def _status_word(source: dict[str, Any], key: str) -> str:
    from airflow_recon_provider.i18n import _, ngettext
    from airflow_recon_provider.reconciliation.steps import source_status_name

    if source.get("status") != "ok":
        return source_status_name(source.get("status"))
    if key == "matches":
        return _("matches the gateway") if source.get("matches") else _("differs from the gateway")
    errors = int(source.get("errors") or 0)
    return ngettext("%(num)s error event", "%(num)s error events", errors)


__all__ = ["NOT_CONFIGURED", "ReconciliationSnapshotOperator", "ValidateScopeOperator"]
