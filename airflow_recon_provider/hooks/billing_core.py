"""Hook on billing-gateway-core (connection ``billing_gateway_core``).

Runbook, Mitigação 1 (Reprocessamento): "Se falha persistir, acionar reconciliação manual
pelo serviço core" —
``curl -X POST http://billing-gateway-core:8000/payments/reconciliation -H "Authorization: Bearer <token>"``.

The connection's host is the core's base URL (``http://billing-gateway-core:8000``); its
password is the bearer token, sent in the ``Authorization`` header and never logged,
returned or put in an error message.

Each request carries an ``Idempotency-Key`` chosen by the caller (deterministic per PSP,
cycle and remediation run), which is what makes retrying a POST safe: a timeout does not
tell whether the core received the request, and a retry with the same key cannot start a
second reconciliation. Failures:

- HTTP 5xx, 429, a timeout or a refused connection: retried a bounded number of times
  with exponential backoff; a ``Retry-After`` (seconds or HTTP date) is honoured, and one
  longer than ``max_retry_after_seconds`` gives up at once; then
  :class:`BillingCoreUnavailableError`.
- Any other HTTP 4xx: :class:`BillingCoreRequestError`, never retried.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import requests
from airflow.providers.http.hooks.http import HttpHook

from airflow_recon_provider.hooks._connections import check_header_extras, is_missing_connection
from airflow_recon_provider.hooks._http import (  # parse_retry_after: part of this module's API
    TOKEN_HINT,
    BearerToken,
    iso,
    parse_retry_after,
    send_with_retries,
    setting,
)
from airflow_recon_provider.names import BILLING_CORE_CONN_ID
from airflow_recon_provider.reconciliation.config import check_psp_name
from airflow_recon_provider.reconciliation.errors import (
    BillingCoreRequestError,
    BillingCoreUnavailableError,
    ConnectionMissingError,
)

if TYPE_CHECKING:
    from airflow_recon_provider.reconciliation.window import Cycle, Window


@dataclass(frozen=True)
class CoreReconciliationJob:
    """The core's answer to a reconciliation request (no credential in it)."""

    psp: str
    cycle_start: str
    cycle_end: str
    http_status: int
    status: str
    job_id: str | None
    idempotency_key: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class BillingCoreHook(HttpHook):
    """Ask billing-gateway-core to reconcile a PSP's cycle.

    :param billing_core_conn_id: Airflow connection of the core (host = base URL, password =
        bearer token).
    :param timeout: seconds to wait for the core to connect and to answer, per attempt.
    :param max_attempts: attempts per request while the core is unavailable, at least 1.
    :param backoff_seconds: first wait between attempts; doubles on each retry.
    :param max_backoff_seconds: longest wait between attempts without ``Retry-After``.
    :param max_retry_after_seconds: longest ``Retry-After`` honoured; a longer one gives up
        at once instead of blocking the task.
    """

    conn_name_attr = "billing_core_conn_id"
    default_conn_name = BILLING_CORE_CONN_ID
    conn_type = "billing_core"
    hook_name = "Billing Gateway Core"

    reconciliation_endpoint = "payments/reconciliation"
    #: how the hook waits between attempts (tests replace it to record the waits)
    _sleep = staticmethod(time.sleep)

    def __init__(
        self,
        billing_core_conn_id: str = default_conn_name,
        *,
        timeout: float = 30.0,
        max_attempts: int = 5,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 60.0,
        max_retry_after_seconds: float = 300.0,
        **kwargs: Any,
    ) -> None:
        self.timeout = float(setting(timeout, "timeout"))
        self.max_attempts = int(setting(max_attempts, "max_attempts", integer=True))
        self.backoff_seconds = float(setting(backoff_seconds, "backoff_seconds", zero=True))
        self.max_backoff_seconds = float(setting(max_backoff_seconds, "max_backoff_seconds", zero=True))
        self.max_retry_after_seconds = float(
            setting(max_retry_after_seconds, "max_retry_after_seconds", zero=True)
        )
        super().__init__(method="POST", http_conn_id=billing_core_conn_id, **kwargs)
        self.billing_core_conn_id = billing_core_conn_id

    # -- connection ------------------------------------------------------------------------
    def _extract_auth(self, connection: Any) -> Any | None:
        token = connection.password
        if not token:
            return None
        from airflow.sdk.log import mask_secret

        mask_secret(token)  # connection passwords are masked already; this covers any source
        return BearerToken(token)

    def _configure_session_from_extra(
        self, session: Any, connection: Any, extra_options: dict[str, Any]
    ) -> Any:
        session = super()._configure_session_from_extra(session, connection, extra_options)
        check_header_extras(session.headers, connection.conn_id)
        return session

    def _session(self) -> requests.Session:
        try:
            return self.get_conn(headers={"Accept": "application/json"})
        except Exception as exc:
            if is_missing_connection(exc):
                conn_id = self.billing_core_conn_id
                raise ConnectionMissingError(
                    f"Airflow connection {conn_id!r} is not defined; create it (host = "
                    "http://billing-gateway-core:8000, password = API token) or set "
                    f"AIRFLOW_CONN_{conn_id.upper()}"
                ) from None
            raise

    # -- requests ----------------------------------------------------------------------------
    def _post_json(
        self, endpoint: str, body: dict[str, Any], *, idempotency_key: str, what: str
    ) -> requests.Response:
        session = self._session()
        url = self.url_from_endpoint(endpoint)
        where = f"billing-gateway-core {self.base_url} (connection {self.billing_core_conn_id})"
        prepared = session.prepare_request(
            requests.Request("POST", url, json=body, headers={"Idempotency-Key": idempotency_key})
        )
        try:
            return send_with_retries(
                self,
                session,
                prepared,
                where=where,
                what=what,
                unavailable=BillingCoreUnavailableError,
                refused=BillingCoreRequestError,
                hints={
                    401: TOKEN_HINT,
                    403: TOKEN_HINT,
                    404: "; check the base URL (host) of the connection",
                    409: "; the core holds a different request under this Idempotency-Key",
                },
                timeout=self.timeout,
                max_attempts=self.max_attempts,
                backoff_seconds=self.backoff_seconds,
                max_backoff_seconds=self.max_backoff_seconds,
                max_retry_after_seconds=self.max_retry_after_seconds,
                sleep=self._sleep,
            )
        finally:
            session.close()

    # -- reconciliation ----------------------------------------------------------------------
    def trigger_reconciliation(
        self, psp: str, cycle: Cycle | Window, *, idempotency_key: str
    ) -> CoreReconciliationJob:
        """``POST /payments/reconciliation`` with ``{"psp", "cycle_start", "cycle_end"}``.

        :param psp: the PSP whose cycle the core reconciles.
        :param cycle: the hourly cycle (or window) to reconcile.
        :param idempotency_key: sent as ``Idempotency-Key``; the same key for the same PSP
            and cycle makes a retried request a no-op on the core's side.
        :returns: the core's answer: HTTP status, job status and job id (when it sends one).
        :raises BillingCoreUnavailableError: 5xx/429/timeout/refused after the retries.
        :raises BillingCoreRequestError: another 4xx answer (not retried).
        """
        check_psp_name(psp)
        if not idempotency_key or not idempotency_key.isprintable() or len(idempotency_key) > 255:
            raise ValueError("idempotency_key must be 1 to 255 printable characters")
        body = {"psp": psp, "cycle_start": iso(cycle.start), "cycle_end": iso(cycle.end)}
        what = f"the reconciliation of PSP {psp} cycle {body['cycle_start']}"
        response = self._post_json(
            self.reconciliation_endpoint, body, idempotency_key=idempotency_key, what=what
        )
        try:
            payload = json.loads(response.content) if response.content else {}
        except ValueError:
            payload = {}
            self.log.warning("billing core answered %s with a body that is not JSON", what)
        if not isinstance(payload, dict):
            payload = {}
        job_id = next(
            (payload[key] for key in ("job_id", "jobId", "id", "reconciliation_id") if payload.get(key)),
            None,
        )
        job = CoreReconciliationJob(
            psp=psp,
            cycle_start=body["cycle_start"],
            cycle_end=body["cycle_end"],
            http_status=response.status_code,
            status=str(payload.get("status") or "accepted"),
            job_id=None if job_id is None else str(job_id),
            idempotency_key=idempotency_key,
        )
        self.log.info(
            "billing core accepted %s: HTTP %d, status %s, job %s",
            what,
            job.http_status,
            job.status,
            job.job_id or "(none given)",
        )
        return job


__all__ = ["BillingCoreHook", "CoreReconciliationJob", "parse_retry_after"]
