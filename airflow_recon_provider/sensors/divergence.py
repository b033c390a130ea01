"""DivergenceSensor: waits for the runbook's alert ``billing_gateway-reconciliation``.

Detecção: divergence above R$ 5.000 or reconciliation lag above 2 cycles for a PSP with
no open incident, or whose open incident only finance's report and its dry run worked on
(:func:`~airflow_recon_provider.reconciliation.detection.watch_fires_on_open_incident`).
Deferrable by default (no worker slot held between polls); pokes once before deferring so
an alert already present needs no trigger round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import PokeReturnValue

from airflow_recon_provider.sensors._base import PokeThenDeferSensor

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_recon_provider.triggers.divergence import DivergenceTrigger


class DivergenceSensor(PokeThenDeferSensor):
    """Succeed when a watched PSP breaches the alert rule and has no open incident (or an
    open incident only finance's report worked on: the payload then names it, ``incident_id``).

    The XCom value is the alert payload: ``psp``, ``window_start``, ``window_end``,
    ``reason`` (``amount``, ``lag`` or both), divergent amount, count and %, ``by_kind``.

    :param psps: PSPs to watch (templated); empty means the configured PSP list.
    :param billing_gateway_conn_id: gateway database connection (a read replica works).
    :param lookback_cycles: completed hourly cycles covered by the checked window.
    :param deferrable: wait in the triggerer (default) instead of poking from a worker.
    :param poll_interval: seconds between checks in deferrable mode (``poke_interval``
        applies in poke mode).
    """

    template_fields: Sequence[str] = ("psps",)

    def __init__(
        self,
        *,
        psps: list[str] | None = None,
        billing_gateway_conn_id: str = "billing_gateway_db",
        lookback_cycles: int = 3,
        deferrable: bool = True,
        poll_interval: float = 300.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.psps = psps
        self.billing_gateway_conn_id = billing_gateway_conn_id
        self.lookback_cycles = lookback_cycles
        self.deferrable = deferrable
        self.poll_interval = poll_interval

    def _trigger(self) -> DivergenceTrigger:
        # the trigger (and Airflow's trigger base) only when poking or deferring, not when
        # the DAG processor or a task start imports the sensor
        from airflow_recon_provider.triggers.divergence import DivergenceTrigger

        return DivergenceTrigger(
            psps=list(self.psps or []),
            conn_id=self.billing_gateway_conn_id,
            lookback_cycles=self.lookback_cycles,
            poll_interval=self.poll_interval,
            once=True,
        )

    def poke(self, context: Context) -> PokeReturnValue:
        # the same code path as the trigger's poll, so sensor and trigger never disagree
        payloads = asyncio.run(self._trigger().poll_once(set()))
        if payloads:
            self.log.info("alert for PSP %s (%s)", payloads[0]["psp"], payloads[0]["reason"])
            return PokeReturnValue(is_done=True, xcom_value=payloads[0])
        return PokeReturnValue(is_done=False)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("status") != "alert":
            raise RuntimeError(f"DivergenceTrigger ended without an alert: {event!r}")
        self.log.info("alert for PSP %s (%s)", event["psp"], event["reason"])
        return event
