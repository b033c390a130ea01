"""Operators of the hourly reconciliation (DAG ``billing_gateway_reconciliation``).

Runbook, Contexto: "Processo de reconciliação roda a cada hora"; Checar Jobs: the tasks
on-call looks at are ``fetch_psp_statements`` and ``match_transactions``.

- :class:`ReconciliationScopeOperator` decides the cycle and the PSPs of a run
  (runbook, Validar Escopo) and hands one set of arguments per PSP to the mapped tasks.
- :class:`FetchPspStatementsOperator` replaces the PSP's ``psp_statement_lines`` of the
  cycle with the PSP's statement.
- :class:`MatchTransactionsOperator` classifies the cycle and records it in
  ``payment_reconciliation_logs``.

A PSP paused in ``recon.controls`` (runbook, Ações de Contenção: "pausar reconciliação
*automática*") is skipped by both tasks and nothing of it is written — except in a run that
reprocesses the PSP's cycles on purpose (``reprocess=True``: the conf ``reprocess: true``
that :class:`ReprocessReconciliationOperator` sets), which reconciles it anyway and says so
in its log: containment stops the schedule, not the runbook's next step (Mitigação 1,
Reprocessamento). Hooks are imported inside ``execute`` so that the DAG files that use these
operators parse fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID
from airflow_recon_provider.operators._context import blank
from airflow_recon_provider.operators._scoped import ScopedOperator

if TYPE_CHECKING:
    from datetime import datetime

    from airflow.sdk import Context

    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.reconciliation.window import Window


def _run_cycle(context: Context, cycle_start: Any, cycle_end: Any = None) -> Window:
    """The window of this task: explicit ``cycle_start``/``cycle_end``, else the run's data interval."""
    from airflow_recon_provider.reconciliation.schedule import resolve_cycle

    dag_run = context.get("dag_run")
    return resolve_cycle(
        cycle_start=None if blank(cycle_start) else cycle_start,
        cycle_end=None if blank(cycle_end) else cycle_end,
        data_interval_start=context.get("data_interval_start"),
        data_interval_end=context.get("data_interval_end"),
        run_after=getattr(dag_run, "run_after", None),
    )


class ReconciliationScopeOperator(ScopedOperator):
    """Decide which cycle and which PSPs a reconciliation run covers (runbook, Validar Escopo).

    Returns one ``{"psp", "cycle_start", "cycle_end"}`` per PSP, for ``expand_kwargs`` of
    the per-PSP tasks.

    :param psp: only this PSP (must be known: configured, or present in
        ``payment_intents`` when no PSP list is configured); empty means every PSP:
        the configured list (``RECON_CONFIG``), else the PSPs of ``payment_intents``.
    :param cycle_start: start of the hourly cycle to reconcile (ISO 8601 with offset, on
        the hour); empty means the run's data interval.
    :param billing_gateway_conn_id: connection of the billing gateway database.
    """

    template_fields: Sequence[str] = ("psp", "cycle_start")
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        psp: str | None = None,
        cycle_start: str | datetime | None = None,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.psp = psp
        self.cycle_start = cycle_start
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def execute(self, context: Context) -> list[dict[str, str]]:
        from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook

        cycle = _run_cycle(context, self.cycle_start)
        config = self.scope_config()
        gateway = BillingGatewayHook(billing_gateway_conn_id=self.billing_gateway_conn_id, config=config)
        if not blank(self.psp):
            psp = self.scope_psp()
            gateway.resolve_psp(psp)
            psps = [psp]
        else:
            psps = config.psp_names or gateway.known_psps()
        if psps:
            self.log.info("Cycle %s: reconciling PSP(s) %s", cycle, ", ".join(psps))
        else:
            self.log.warning("Cycle %s: no PSP configured nor seen in payment_intents; nothing to do", cycle)
        start, end = cycle.start.isoformat(), cycle.end.isoformat()
        return [{"psp": psp, "cycle_start": start, "cycle_end": end} for psp in psps]


class _PspCycleOperator(ScopedOperator):
    """Common ground of the per-PSP tasks: the PSP, the cycle, the pause check.

    :param reprocess: this run reprocesses the PSP's cycle on purpose (templated,
        ``true``/``false``): a PSP paused in ``recon.controls`` is reconciled anyway.
    """

    template_fields: Sequence[str] = ("psp", "cycle_start", "cycle_end", "reprocess")

    def __init__(
        self,
        *,
        psp: str,
        cycle_start: str | datetime | None = None,
        cycle_end: str | datetime | None = None,
        reprocess: bool | str = False,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.psp = psp
        self.cycle_start = cycle_start
        self.cycle_end = cycle_end
        self.reprocess = reprocess
        self.billing_gateway_conn_id = billing_gateway_conn_id

    def _prepare(self, context: Context) -> tuple[str, Window, BillingGatewayHook]:
        from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook

        psp = self.scope_psp()
        cycle = _run_cycle(context, self.cycle_start, self.cycle_end)
        gateway = BillingGatewayHook(billing_gateway_conn_id=self.billing_gateway_conn_id)
        return psp, cycle, gateway

    def _skip_if_paused(self, gateway: BillingGatewayHook, psp: str, cycle: Window) -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        paused, reason, actor = gateway.is_paused(psp)
        if paused and self.flag("reprocess"):
            self.log.warning(
                "Reconciliation of PSP %s is paused in recon.controls by %s (%s), but this run "
                "reprocesses cycle %s on purpose (reprocess=true): %s runs anyway. Scheduled runs "
                "keep skipping the PSP until it is resumed.",
                psp,
                actor or "unknown",
                reason or "no reason given",
                cycle,
                self.task_id,
            )
            return
        if paused:
            message = (
                f"Reconciliation of PSP {psp} is paused in recon.controls by {actor or 'unknown'} "
                f"({reason or 'no reason given'}): {self.task_id} skipped for cycle {cycle}, "
                "nothing written"
            )
            self.log.warning(message)
            raise AirflowSkipException(message)

    def _record_failure(
        self, gateway: BillingGatewayHook, psp: str, cycle: Window, run_id: str, exc: BaseException
    ) -> None:
        """Close the cycle's log row as ``failed``; never hide the original error."""
        try:
            gateway.record_cycle(
                psp,
                cycle,
                "failed",
                None,
                f"{self.task_id} failed (run {run_id}): {type(exc).__name__}: {exc}",
            )
        except Exception:
            self.log.exception("Could not record the failure of PSP %s cycle %s", psp, cycle)


class FetchPspStatementsOperator(_PspCycleOperator):
    """Fetch the PSP's statement of the cycle into ``psp_statement_lines`` (task
    ``fetch_psp_statements``).

    The cycle's log row is opened as ``running``; the statement is validated completely
    before anything is written, then replaces the PSP's lines of the cycle in one
    transaction (a re-run never duplicates lines). On any error the row is closed as
    ``failed`` and the error re-raised.

    :param psp: the PSP (``payment_intents.provider`` / ``psp_statement_lines.psp``).
    :param cycle_start: start of the cycle (ISO 8601, on the hour); default: the run's
        data interval.
    :param cycle_end: end of the cycle; default: one hour after ``cycle_start``.
    :param reprocess: the run reprocesses the cycle on purpose: a paused PSP is fetched anyway.
    :param psp_conn_id: connection of the PSP API; default ``psp_<psp>``.
    :param billing_gateway_conn_id: connection of the billing gateway database.
    :param timeout: seconds per HTTP request to the PSP.
    :param max_attempts: HTTP attempts while the PSP is unavailable (bounded backoff).
    """

    template_fields: Sequence[str] = ("psp", "cycle_start", "cycle_end", "reprocess", "psp_conn_id")
    ui_color = "#fff3e0"

    def __init__(
        self,
        *,
        psp: str,
        cycle_start: str | datetime | None = None,
        cycle_end: str | datetime | None = None,
        psp_conn_id: str | None = None,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        timeout: float = 30.0,
        max_attempts: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            psp=psp,
            cycle_start=cycle_start,
            cycle_end=cycle_end,
            billing_gateway_conn_id=billing_gateway_conn_id,
            **kwargs,
        )
        self.psp_conn_id = psp_conn_id
        self.timeout = timeout
        self.max_attempts = max_attempts

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.hooks.psp import PspHook

        psp, cycle, gateway = self._prepare(context)
        gateway.resolve_psp(psp)
        self._skip_if_paused(gateway, psp, cycle)
        run_id = context["run_id"]
        gateway.record_cycle(psp, cycle, "running", None, f"{self.task_id} started (run {run_id})")
        try:
            hook = PspHook(
                None if blank(self.psp_conn_id) else self.psp_conn_id,
                timeout=self.timeout,
                max_attempts=self.max_attempts,
            )
            statement = hook.fetch_statement(psp, cycle)
            written = gateway.replace_statement_lines(psp, cycle, statement)
        except Exception as exc:
            self._record_failure(gateway, psp, cycle, run_id, exc)
            raise
        self.log.info(
            "PSP %s cycle %s: statement %s, %d line(s) in psp_statement_lines",
            psp,
            cycle,
            statement.statement_id,
            written,
        )
        return {
            "psp": psp,
            "cycle_start": cycle.start.isoformat(),
            "cycle_end": cycle.end.isoformat(),
            "statement_id": statement.statement_id,
            "lines": written,
            "pages": statement.pages,
        }


class MatchTransactionsOperator(_PspCycleOperator):
    """Classify the cycle's divergences and record them (task ``match_transactions``).

    Classifies and stores the cycle (``BillingGatewayHook.store_cycle``), reads its summary
    (``BillingGatewayHook.summary``) and writes the cycle's
    ``payment_reconciliation_logs`` row: ``success`` when the classification ran (the
    divergence goes into the row's figures, it is not a failure), ``failed`` when it
    raised, and then the error is re-raised. Returns the summary as a dict.

    :param psp: the PSP.
    :param cycle_start: start of the cycle (ISO 8601, on the hour); default: the run's
        data interval.
    :param cycle_end: end of the cycle; default: one hour after ``cycle_start``.
    :param reprocess: the run reprocesses the cycle on purpose: a paused PSP is matched anyway.
    :param billing_gateway_conn_id: connection of the billing gateway database.
    """

    ui_color = "#e8f5e9"

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_recon_provider.reconciliation.money import format_money, format_pct
        from airflow_recon_provider.reconciliation.report import rates_text, summary_table

        psp, cycle, gateway = self._prepare(context)
        self._skip_if_paused(gateway, psp, cycle)
        run_id = context["run_id"]
        try:
            # store the cycle's classification for the report, summaries and the sensor's poll
            # (reconciliation/cycle_store.py); the summary below then reads it back
            gateway.store_cycle(psp, cycle)
            summary = gateway.summary(psp, cycle)
            pct = summary.divergence_pct
            by_kind = ", ".join(
                f"{kind.value} {total.count}"
                for kind, total in sorted(summary.by_kind.items(), key=lambda kv: kv[0].rank)
                if total.count
            )
            # the log row's divergent_amount_minor is in the reporting currency (converted);
            # the note says so, with each currency's own figure and the rates used (DESIGN 3a)
            rc = summary.reporting_currency
            per_currency = ", ".join(
                f"{code}: {fig.divergent_count} key(s) {format_money(fig.divergent_amount_minor, code)}"
                for code, fig in sorted(summary.by_currency.items())
                if fig.has_divergence
            )
            converted = bool(summary.used_rates or summary.unconverted_currencies)
            notes = (
                f"{self.task_id} (run {run_id}): {summary.divergent_count} divergent key(s), "
                f"{format_money(summary.divergent_amount_minor, rc)} divergent of "
                f"{format_money(summary.gateway_amount_minor, rc)}"
                f"{f' (converted to {rc})' if converted else ''} ({format_pct(pct)})"
                + (f"; by currency {per_currency}" if per_currency and converted else "")
                + (f"; rates {rates_text(summary)}" if converted else "")
                + (f"; {by_kind}" if by_kind else "")
            )
            gateway.record_cycle(psp, cycle, "success", summary, notes)
        except Exception as exc:
            self._record_failure(gateway, psp, cycle, run_id, exc)
            raise
        self.log.info("%s", summary_table(summary))
        return summary.as_dict()


__all__ = ["FetchPspStatementsOperator", "MatchTransactionsOperator", "ReconciliationScopeOperator"]
