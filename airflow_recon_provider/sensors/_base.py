"""The provider's deferrable sensor pattern, written once: poke once in the worker (no
trigger round trip when the condition already holds), then defer to the sensor's own
trigger with the sensor's timeout; ``deferrable=False`` keeps Airflow's poke loop."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger


class PokeThenDeferSensor(BaseSensorOperator):
    """Base of the provider's sensors; subclasses implement ``poke``, ``_trigger`` and
    ``execute_complete`` and set ``self.deferrable``."""

    deferrable: bool = True
    #: every concrete sensor defines ``_trigger(self) -> BaseTrigger``
    _trigger: Callable[[], BaseTrigger]

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        self.defer(
            trigger=self._trigger(),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )
