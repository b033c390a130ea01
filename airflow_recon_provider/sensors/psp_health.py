"""PspHealthSensor: waits until a PSP's API is available (runbook, Investigação 4,
"Dependências Externas": ``curl <psp-health-endpoint>/status | jq '.status'``).

Deferrable by default (no worker slot held between checks); checks once before deferring
so a PSP that is already healthy needs no trigger round trip. Every check's outcome is
logged and pushed to XCom (key ``health_check``); a check that ends the wait is also the
task's return value. Outcomes in ``fail_on`` fail the task at once, without retries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_recon_provider.reconciliation.config import check_psp_name
from airflow_recon_provider.reconciliation.errors import ConnectionMissingError
from airflow_recon_provider.reconciliation.health import (
    HealthCheck,
    PodExecTarget,
    wait_and_fail_sets,
)
from airflow_recon_provider.reconciliation.health import status_mapping as effective_status_mapping
from airflow_recon_provider.sensors._base import PokeThenDeferSensor
from airflow_recon_provider.triggers.psp_health import VIA_HTTP, VIA_POD, PspHealthTrigger, check_via

if TYPE_CHECKING:
    from airflow.sdk import Context

#: XCom key of the latest check the task saw (whatever its outcome)
XCOM_KEY = "health_check"


class PspHealthSensor(PokeThenDeferSensor):
    """Wait until a PSP's health endpoint reports a wanted outcome (default: healthy).

    Outcomes: ``healthy``, ``degraded``, ``down`` (the PSP's JSON ``status`` through the
    status mapping), ``unknown_status``, and the failures ``timeout``, ``http_error``,
    ``connection_refused``, ``unreachable``, ``malformed_json``, ``probe_error``. The
    XCom value is the check as a dict: ``psp``, ``outcome``, ``http_status``,
    ``raw_status``, ``latency_ms``, ``detail``, ``endpoint``, ``via``, ``checked_at``.

    :param psp: the PSP (templated); its connection is ``psp_<name>``.
    :param psp_conn_id: another connection for the PSP API (templated).
    :param wait_for: outcomes that end the wait successfully (default ``["healthy"]``).
    :param fail_on: outcomes that fail the task at once (default none: keep waiting).
    :param status_mapping: PSP status -> healthy | degraded | down, over the defaults
        (``ok``/``up``/``healthy`` ... healthy, ``degraded``/``partial``/``slow`` ...
        degraded, ``down``/``outage``/``error`` ... down).
    :param request_timeout: seconds one check may take.
    :param via: ``http`` to ask the PSP from Airflow, ``pod`` to run the runbook's curl
        inside the billing-gateway pod (``kubectl exec`` through cncf-kubernetes).
    :param pod: where ``via="pod"`` runs (default: connection ``kubernetes_billing``,
        namespace ``billing-gateway``, ``deploy/billing-gateway``).
    :param deferrable: wait in the triggerer (default) instead of poking from a worker;
        ``poke_interval`` is the time between checks either way.
    """

    template_fields: Sequence[str] = ("psp", "psp_conn_id")
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        psp: str,
        psp_conn_id: str | None = None,
        wait_for: Iterable[str] | None = None,
        fail_on: Iterable[str] | None = None,
        status_mapping: Mapping[str, str] | None = None,
        request_timeout: float = 10.0,
        via: str = VIA_HTTP,
        pod: PodExecTarget | Mapping[str, Any] | None = None,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        wait, fail = wait_and_fail_sets(wait_for, fail_on)
        self.psp = psp
        self.psp_conn_id = psp_conn_id
        self.wait_for = sorted(outcome.value for outcome in wait)
        self.fail_on = sorted(outcome.value for outcome in fail)
        effective_status_mapping(status_mapping)  # a bad mapping fails at DAG parse time
        self.status_mapping = dict(status_mapping) if status_mapping else None
        self.request_timeout = float(request_timeout)
        self.via = check_via(via)
        self.pod = pod if isinstance(pod, PodExecTarget) else PodExecTarget.from_dict(pod)
        self.deferrable = deferrable

    def _check(self) -> HealthCheck | None:
        from airflow_recon_provider.hooks.psp import PspHook

        hook = PspHook(psp_conn_id=self.psp_conn_id, timeout=self.request_timeout)
        try:
            if self.via == VIA_POD:
                return hook.check_health_from_pod(
                    self.psp,
                    target=self.pod,
                    timeout=self.request_timeout,
                    status_mapping=self.status_mapping,
                )
            return hook.check_health(
                self.psp, timeout=self.request_timeout, status_mapping=self.status_mapping
            )
        except ConnectionMissingError as exc:
            # may be created while we wait: log it and keep waiting, like the trigger does
            self.log.error("PSP %s health not checked: %s", self.psp, exc)
            return None

    def _settle(self, context: Context, check: HealthCheck) -> bool:
        """Log and push ``check``; ``True`` when it ends the wait, raise when it fails it."""
        self.log.info("%s", check.describe())
        context["ti"].xcom_push(key=XCOM_KEY, value=check.as_dict())
        if check.outcome in self.fail_on:
            raise AirflowFailException(
                f"PSP {check.psp} health is {check.outcome.value}, one of fail_on "
                f"({', '.join(self.fail_on)}): {check.detail}"
            )
        if check.outcome in self.wait_for:
            return True
        self.log.info(
            "PSP %s is %s, waiting for %s; next check in %g s",
            check.psp,
            check.outcome.value,
            " or ".join(self.wait_for),
            self.poke_interval,
        )
        return False

    def poke(self, context: Context) -> PokeReturnValue:
        check_psp_name(self.psp)
        check = self._check()
        if check is None or not self._settle(context, check):
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=check.as_dict())

    def _trigger(self) -> PspHealthTrigger:
        return PspHealthTrigger(
            psp=self.psp,
            conn_id=self.psp_conn_id,
            wait_for=self.wait_for,
            fail_on=self.fail_on,
            status_mapping=self.status_mapping,
            poll_interval=self.poke_interval,
            request_timeout=self.request_timeout,
            via=self.via,
            pod=self.pod.as_dict() if self.via == VIA_POD else None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if (
            not event
            or event.get("status") not in {"success", "failed"}
            or not isinstance(event.get("check"), dict)
        ):
            raise AirflowException(f"PspHealthTrigger ended without a health check: {event!r}")
        check = HealthCheck.from_dict(event["check"])
        if not self._settle(context, check):  # raises for fail_on
            raise AirflowException(
                f"PspHealthTrigger reported {event['status']} for outcome {check.outcome.value}, "
                f"which is not in wait_for ({', '.join(self.wait_for)})"
            )
        return check.as_dict()
