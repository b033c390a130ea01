"""RecoverySensor: the runbook's Critérios de Recuperação, before Encerramento.

Deferrable by default; pokes once first so a PSP already recovered needs no trigger.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import PokeReturnValue

from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID, PAYMENTS_LEDGER_CONN_ID
from airflow_recon_provider.sensors._base import PokeThenDeferSensor

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_recon_provider.triggers.recovery import RecoveryTrigger


#: ``[recon]`` option of the seconds between two checks, and its default
RECOVERY_POLL_OPTION = "recovery_poll_interval"
DEFAULT_RECOVERY_POLL = 300.0


class RecoverySensor(PokeThenDeferSensor):
    """Succeed when the PSP's window has recovered: the runbook's three criteria (divergence
    below the thresholds, the latest cycles successful, the ledger aligned with the PSP's
    statements per status and currency).

    The XCom value is the last evaluation: divergent amount (converted to the reporting
    currency), count, %, each currency's own figures and the rates used, the states of the
    latest reconciled cycles, and the ledger's figures beside the statement's and the
    gateway's (``ledger``). The remediation DAG records it on the incident timeline.

    :param psp: the PSP (templated).
    :param window_start: ISO start of the window (templated).
    :param window_end: ISO end of the window (templated).
    :param billing_gateway_conn_id: gateway database connection.
    :param payments_ledger_conn_id: payments ledger database connection.
    :param deferrable: wait in the triggerer (default) instead of poking from a worker.
    :param poll_interval: seconds between checks in deferrable mode; ``None`` (default):
        ``[recon] recovery_poll_interval`` (300 s unless configured), read when the sensor
        runs, so a bad value fails the task with the option named and the DAG still parses.
    :param on_wait: called as ``on_wait(context, evaluation)`` when the first check of a try
        finds the window not recovered, before the sensor waits (the remediation DAG puts the
        three criteria, with the figures that hold it back, on the incident timeline); in
        ``mode="reschedule"`` each rescheduled poke is a first check. An exception it raises
        is logged, never the sensor's outcome.
    """

    template_fields: Sequence[str] = ("psp", "window_start", "window_end")

    def __init__(
        self,
        *,
        psp: str,
        window_start: str,
        window_end: str,
        billing_gateway_conn_id: str = BILLING_GATEWAY_CONN_ID,
        payments_ledger_conn_id: str = PAYMENTS_LEDGER_CONN_ID,
        deferrable: bool = True,
        poll_interval: float | None = None,
        on_wait: Callable[[Context, Mapping[str, Any]], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.psp = psp
        self.window_start = window_start
        self.window_end = window_end
        self.billing_gateway_conn_id = billing_gateway_conn_id
        self.payments_ledger_conn_id = payments_ledger_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.on_wait = on_wait
        self._waiting_told = False

    def _poll_interval(self) -> float:
        if self.poll_interval is not None:
            return float(self.poll_interval)
        from airflow_recon_provider.configuration import seconds

        return seconds(RECOVERY_POLL_OPTION, default=DEFAULT_RECOVERY_POLL, minimum=1, maximum=3600)

    def _trigger(self) -> RecoveryTrigger:
        # the trigger (and Airflow's trigger base) only when poking or deferring, not when
        # the DAG processor or a task start imports the sensor
        from airflow_recon_provider.triggers.recovery import RecoveryTrigger

        return RecoveryTrigger(
            psp=self.psp,
            window_start=self.window_start,
            window_end=self.window_end,
            conn_id=self.billing_gateway_conn_id,
            poll_interval=self._poll_interval(),
            ledger_conn_id=self.payments_ledger_conn_id,
        )

    def poke(self, context: Context) -> PokeReturnValue:
        # bad input (unknown PSP, bad window) raises: a sensor must not wait on a typo
        from airflow_recon_provider.reconciliation.figures import Figures

        result = asyncio.run(self._trigger().check())
        ledger = result["ledger"]
        self.log.info(
            "%s: %s divergent keys, %s; latest cycles %s; ledger %s row(s) / %s minor units (%s) off "
            "the statements -> %s",
            self.psp,
            result["divergent_count"],
            # the converted amount with each currency's own figure and the rates used
            Figures.from_dict(result).short(),
            result["latest_cycle_states"],
            ledger["differing_count"],
            ledger["differing_amount_minor"],
            ledger["reporting_currency"],
            result["status"],
        )
        done = result["status"] == "recovered"
        if not done and self.on_wait is not None and not self._waiting_told:
            self._waiting_told = True  # once per try: poke mode checks again every poke
            try:
                self.on_wait(context, result)
            except Exception:
                self.log.exception("on_wait of %s failed; the sensor keeps waiting", self.task_id)
        return PokeReturnValue(is_done=done, xcom_value=result)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("status") != "recovered":
            raise RuntimeError(f"RecoveryTrigger ended without recovery: {event!r}")
        return event
