"""RecoverySensor: the runbook's Critérios de Recuperação, before Encerramento.

Deferrable by default; pokes once first so a PSP already recovered needs no trigger.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import PokeReturnValue

from airflow_recon_provider.sensors._base import PokeThenDeferSensor

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_recon_provider.triggers.recovery import RecoveryTrigger


class RecoverySensor(PokeThenDeferSensor):
    """Succeed when the PSP's window has recovered (amount, count and successful cycles).

    The XCom value is the last evaluation: divergent amount (converted to the reporting
    currency), count, %, each currency's own figures and the rates used, and the states of
    the latest reconciled cycles. The remediation DAG records it on the incident timeline.

    :param psp: the PSP (templated).
    :param window_start: ISO start of the window (templated).
    :param window_end: ISO end of the window (templated).
    :param billing_gateway_conn_id: gateway database connection.
    :param deferrable: wait in the triggerer (default) instead of poking from a worker.
    :param poll_interval: seconds between checks in deferrable mode.
    """

    template_fields: Sequence[str] = ("psp", "window_start", "window_end")

    def __init__(
        self,
        *,
        psp: str,
        window_start: str,
        window_end: str,
        billing_gateway_conn_id: str = "billing_gateway_db",
        deferrable: bool = True,
        poll_interval: float = 300.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.psp = psp
        self.window_start = window_start
        self.window_end = window_end
        self.billing_gateway_conn_id = billing_gateway_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval

    def _trigger(self) -> RecoveryTrigger:
        # the trigger (and Airflow's trigger base) only when poking or deferring, not when
        # the DAG processor or a task start imports the sensor
        from airflow_recon_provider.triggers.recovery import RecoveryTrigger

        return RecoveryTrigger(
            psp=self.psp,
            window_start=self.window_start,
            window_end=self.window_end,
            conn_id=self.billing_gateway_conn_id,
            poll_interval=self.poll_interval,
        )

    def poke(self, context: Context) -> PokeReturnValue:
        # bad input (unknown PSP, bad window) raises: a sensor must not wait on a typo
        from airflow_recon_provider.reconciliation.incidents import Figures

        result = asyncio.run(self._trigger().check())
        self.log.info(
            "%s: %s divergent keys, %s; latest cycles %s -> %s",
            self.psp,
            result["divergent_count"],
            # the converted amount with each currency's own figure and the rates used
            Figures.from_dict(result).short(),
            result["latest_cycle_states"],
            result["status"],
        )
        return PokeReturnValue(is_done=result["status"] == "recovered", xcom_value=result)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("status") != "recovered":
            raise RuntimeError(f"RecoveryTrigger ended without recovery: {event!r}")
        return event
