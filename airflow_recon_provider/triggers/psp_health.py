"""PspHealthTrigger: waits, in the triggerer, until a PSP's health endpoint reaches a target
outcome (runbook, Investigação 4: "Confirmar disponibilidade das APIs PSP").

Each poll is one :meth:`PspHook.acheck_health` (httpx, async) or, in pod mode, the
runbook's ``kubectl exec ... curl`` in a worker thread; every poll's outcome is logged.
A failed check is an outcome like any other: it ends the wait only when it is in
``wait_for`` or ``fail_on``, and nothing a PSP or the network does crashes the triggerer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_recon_provider.reconciliation.errors import ConfigError, DependencyUnavailableError, ReconError
from airflow_recon_provider.reconciliation.health import (
    HealthCheck,
    PodExecTarget,
    wait_and_fail_sets,
)
from airflow_recon_provider.reconciliation.health import status_mapping as status_mapping_of
from airflow_recon_provider.triggers._offloop import PSP_HOOK, import_off_loop, prepare_async_http

VIA_HTTP = "http"
VIA_POD = "pod"


def check_via(via: str) -> str:
    if via not in (VIA_HTTP, VIA_POD):
        raise ConfigError(
            f"via must be {VIA_HTTP!r} (from Airflow) or {VIA_POD!r} (from the pod), got {via!r}"
        )
    return via


class PspHealthTrigger(BaseTrigger):
    """Poll a PSP's health until its outcome is in ``wait_for`` (event ``success``) or in
    ``fail_on`` (event ``failed``). The event is ``{"status", "check"}``, ``check`` being
    the :class:`HealthCheck` as a plain dict.

    :param psp: the PSP.
    :param conn_id: its connection (default ``psp_<psp>``).
    :param wait_for: outcomes that end the wait (default ``["healthy"]``).
    :param fail_on: outcomes that end it as a failure (default none).
    :param status_mapping: PSP status -> healthy | degraded | down, over the defaults.
    :param poll_interval: seconds between checks.
    :param request_timeout: seconds one check may take.
    :param via: ``http`` (from the triggerer) or ``pod`` (curl in the billing-gateway pod).
    :param pod: in pod mode, the :class:`PodExecTarget` as a dict (default: the runbook's).
    """

    def __init__(
        self,
        *,
        psp: str,
        conn_id: str | None = None,
        wait_for: Iterable[str] | None = None,
        fail_on: Iterable[str] | None = None,
        status_mapping: Mapping[str, str] | None = None,
        poll_interval: float = 60.0,
        request_timeout: float = 10.0,
        via: str = VIA_HTTP,
        pod: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        wait, fail = wait_and_fail_sets(wait_for, fail_on)
        self.psp = psp
        self.conn_id = conn_id
        self.wait_for = sorted(outcome.value for outcome in wait)
        self.fail_on = sorted(outcome.value for outcome in fail)
        status_mapping_of(status_mapping)  # refuse a bad mapping here, not at every poll
        self.status_mapping = dict(status_mapping) if status_mapping else None
        self.poll_interval = float(poll_interval)
        self.request_timeout = float(request_timeout)
        self.via = check_via(via)
        self.pod = PodExecTarget.from_dict(pod).as_dict() if via == VIA_POD else None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "psp": self.psp,
                "conn_id": self.conn_id,
                "wait_for": list(self.wait_for),
                "fail_on": list(self.fail_on),
                "status_mapping": self.status_mapping,
                "poll_interval": self.poll_interval,
                "request_timeout": self.request_timeout,
                "via": self.via,
                "pod": self.pod,
            },
        )

    async def check_once(self) -> HealthCheck | None:
        """One health check; ``None`` (logged) when it could not even be attempted, e.g.
        the connection is missing. Never raises, except on cancellation."""
        psp_hook = await import_off_loop(PSP_HOOK)  # the http provider: ~0.25 s of imports
        if self.via == VIA_HTTP:
            await prepare_async_http()
        hook = psp_hook.PspHook(psp_conn_id=self.conn_id, timeout=self.request_timeout)
        try:
            if self.via == VIA_POD:
                # fetch the connection here, in the event loop; the Kubernetes exec client is
                # synchronous, so it runs in a worker thread and never blocks the triggerer
                connection = await hook.aget_psp_connection(self.psp)
                return await asyncio.to_thread(
                    hook.check_health_from_pod,
                    self.psp,
                    target=PodExecTarget.from_dict(self.pod),
                    timeout=self.request_timeout,
                    status_mapping=self.status_mapping,
                    connection=connection,
                )
            return await hook.acheck_health(
                self.psp, timeout=self.request_timeout, status_mapping=self.status_mapping
            )
        except ReconError as exc:
            self.log.error("PSP %s health not checked: %s", self.psp, exc)
        except DependencyUnavailableError as exc:
            self.log.warning("PSP %s health not checked this poll, unavailable: %s; retrying", self.psp, exc)
        except Exception as exc:  # a bug or an unforeseen client error must not crash the triggerer
            self.log.warning(
                "PSP %s health check failed this poll (%s: %s); retrying", self.psp, type(exc).__name__, exc
            )
        return None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        polls = 0
        while True:
            check = await self.check_once()
            polls += 1
            if check is not None:
                self.log.info("%s (poll %d)", check.describe(), polls)
                if check.outcome in self.fail_on:
                    yield TriggerEvent({"status": "failed", "check": check.as_dict(), "polls": polls})
                    return
                if check.outcome in self.wait_for:
                    yield TriggerEvent({"status": "success", "check": check.as_dict(), "polls": polls})
                    return
                self.log.info(
                    "PSP %s is %s, waiting for %s; next check in %g s",
                    self.psp,
                    check.outcome.value,
                    " or ".join(self.wait_for),
                    self.poll_interval,
                )
            await asyncio.sleep(self.poll_interval)
