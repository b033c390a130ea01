"""Hook on PagerDuty's Events API v2 (connection ``pagerduty_recon``, type ``pagerduty_events``
of the pagerduty provider): runbook *Detecção* 1, the alert ``billing_gateway-reconciliation``.

Why a subclass of the provider's :class:`PagerdutyEventsHook`: the provider's sync hook
posts through the ``pagerduty`` client, whose base URL must be ``https://`` and which retries
HTTP 429 without limit; its async hook has a fixed ``base_url``. Here the address comes from
the connection, so a site, the demo and the tests choose where events go:

- **routing key** (integration key): the connection's password, as the provider reads it;
  else its extra ``routing_key`` (or ``integration_key``);
- **address**: the connection's host (``https://events.pagerduty.com`` when empty;
  ``events.eu.pagerduty.com`` for the EU service region; ``http://127.0.0.1:<port>`` for a
  local stand-in), with its port and schema; events are posted to ``<address>/v2/enqueue``;
- extras ``timeout`` (seconds per attempt), ``max_attempts`` and ``backoff_seconds``.

The event body is the provider's own (``prepare_event_data``) plus the routing key, exactly
what its async hook sends. Failures: HTTP 5xx or 429, a timeout or a refused connection are
retried a bounded number of times with exponential backoff (the shared
:func:`~airflow_recon_provider.hooks._http.send_with_retries`, tenacity), then
:class:`PagerDutyUnavailableError`; another 4xx (a malformed event, a bad routing key) is
:class:`PagerDutyRequestError` at once. No error text, log line or return value carries the
routing key.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import requests
from airflow.providers.http.hooks.http import HttpHook
from airflow.providers.pagerduty.hooks.pagerduty_events import PagerdutyEventsHook, prepare_event_data

from airflow_recon_provider.hooks._connections import is_missing_connection, missing_connection_error
from airflow_recon_provider.hooks._http import send_with_retries, setting
from airflow_recon_provider.names import PAGERDUTY_CONN_ID
from airflow_recon_provider.reconciliation.errors import (
    ConfigError,
    ServiceRequestError,
    ServiceUnavailableError,
)
from airflow_recon_provider.reconciliation.paging import PagingAction

if TYPE_CHECKING:
    from airflow_recon_provider.reconciliation.paging import PagingEvent

DEFAULT_EVENTS_URL = "https://events.pagerduty.com"
ENQUEUE_PATH = "/v2/enqueue"


class PagerDutyUnavailableError(ServiceUnavailableError):
    """PagerDuty's Events API did not accept the event in time: HTTP 5xx or 429, a timeout or
    a refused connection, after the bounded retries."""


class PagerDutyRequestError(ServiceRequestError):
    """PagerDuty refused the event (HTTP 4xx other than 429): a malformed event or a routing
    key it does not know; never retried."""


class _Transport(HttpHook):
    """The sender of the shared retry helper, counting attempts. Only its ``run_and_check``
    is used: HttpHook's own session would send the connection's extras (the routing key
    among them) as HTTP headers."""

    def __init__(self, conn_id: str) -> None:
        super().__init__(method="POST", http_conn_id=conn_id)
        self.attempts = 0

    def run_and_check(self, session: Any, prepped_request: Any, extra_options: dict[Any, Any]) -> Any:
        self.attempts += 1
        return super().run_and_check(session, prepped_request, extra_options)


class ReconPagerDutyEventsHook(PagerdutyEventsHook):
    """Send the alert's trigger, acknowledge and resolve events.

    :param pagerduty_events_conn_id: Airflow connection (type ``pagerduty_events``): routing
        key in the password (or extra ``routing_key``), the Events API address in the host.
    :param timeout: seconds to connect and to answer, per attempt (extra ``timeout`` wins).
    :param max_attempts: attempts while PagerDuty is unavailable (extra ``max_attempts``
        wins), at least 1.
    :param backoff_seconds: first wait between attempts, doubling (extra ``backoff_seconds``
        wins).
    :param max_backoff_seconds: longest wait between attempts (and longest ``Retry-After``
        honoured).
    """

    default_conn_name = PAGERDUTY_CONN_ID
    hook_name = "PagerDuty Events (reconciliation alert)"

    #: how the hook waits between attempts (tests replace it)
    _sleep = staticmethod(time.sleep)

    def __init__(
        self,
        pagerduty_events_conn_id: str = default_conn_name,
        *,
        timeout: float = 10.0,
        max_attempts: int = 3,
        backoff_seconds: float = 2.0,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        # not the provider's __init__: it reads the connection at once and raises a generic
        # error; here it is read when an event is sent, and a missing one says how to add it
        super(PagerdutyEventsHook, self).__init__()
        self.pagerduty_events_conn_id = pagerduty_events_conn_id
        self.integration_key = ""
        self.base_url = ""
        self.timeout = setting(timeout, "timeout")
        self.max_attempts = int(setting(max_attempts, "max_attempts", integer=True))
        self.backoff_seconds = setting(backoff_seconds, "backoff_seconds", zero=True)
        self.max_backoff_seconds = setting(max_backoff_seconds, "max_backoff_seconds", zero=True)

    # -- the connection ---------------------------------------------------------------------------
    def get_conn(self) -> str:
        """Read the connection: the routing key and the Events API address; returns the
        address (``<scheme>://<host>[:port]``, no trailing slash)."""
        conn_id = self.pagerduty_events_conn_id
        try:
            conn = self.get_connection(conn_id)
        except Exception as exc:
            if is_missing_connection(exc):
                raise missing_connection_error(
                    conn_id, "create it (type pagerduty_events, the integration key as password)"
                ) from None
            raise
        extra = conn.extra_dejson or {}
        key = conn.password or extra.get("routing_key") or extra.get("integration_key") or ""
        if not str(key).strip():
            raise ConfigError(
                f"Airflow connection {conn_id!r} has no PagerDuty routing key: put the service's "
                "Events API v2 integration key in its password"
            )
        self.integration_key = str(key).strip()
        self.base_url = self._address(conn)
        where = f"connection {conn_id!r}: extra"
        if "timeout" in extra:
            self.timeout = setting(extra["timeout"], f"{where} timeout")
        if "max_attempts" in extra:
            self.max_attempts = int(setting(extra["max_attempts"], f"{where} max_attempts", integer=True))
        if "backoff_seconds" in extra:
            self.backoff_seconds = setting(extra["backoff_seconds"], f"{where} backoff_seconds", zero=True)
        return self.base_url

    def _address(self, conn: Any) -> str:
        host = (conn.host or "").strip().rstrip("/")
        if not host:
            return DEFAULT_EVENTS_URL
        if "://" not in host:
            host = f"{(conn.schema or 'https').strip() or 'https'}://{host}"
        scheme = host.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise ConfigError(
                f"Airflow connection {self.pagerduty_events_conn_id!r}: host {conn.host!r} is not an "
                "http(s) address of the Events API"
            )
        if conn.port and host.count(":") < 2:
            host = f"{host}:{int(conn.port)}"
        return host

    def _mask(self, text: str) -> str:
        return text.replace(self.integration_key, "***") if self.integration_key else text

    # -- events -----------------------------------------------------------------------------------
    def event_body(self, event: PagingEvent) -> dict[str, Any]:
        """The JSON posted for ``event``: the provider's ``prepare_event_data`` with
        ``event_action`` and the routing key (as its async hook sends). Acknowledge and
        resolve carry no payload (the API reads only their dedup key)."""
        body = prepare_event_data(**event.event_data_kwargs(), action_key_name="event_action")
        if event.action is not PagingAction.TRIGGER:
            body.pop("payload", None)
        return {"routing_key": self.integration_key, **body}

    def send(self, event: PagingEvent) -> dict[str, Any]:
        """Post ``event`` to ``<address>/v2/enqueue``; returns PagerDuty's answer
        (``{"status": "success", "dedup_key": ...}``) with ``attempts`` added.

        :raises PagerDutyUnavailableError: still unavailable after the bounded retries.
        :raises PagerDutyRequestError: PagerDuty refused the event.
        """
        self.get_conn()
        url = f"{self.base_url}{ENQUEUE_PATH}"
        what = f"the {event.action.value} of {event.dedup_key}"
        where = f"PagerDuty Events API {self.base_url} (connection {self.pagerduty_events_conn_id})"
        sender = _Transport(self.pagerduty_events_conn_id)
        session = requests.Session()
        session.headers.update({"Content-Type": "application/json", "Accept": "application/json"})
        try:
            prepared = session.prepare_request(requests.Request("POST", url, json=self.event_body(event)))
            try:
                response = send_with_retries(
                    sender,
                    session,
                    prepared,
                    where=where,
                    what=what,
                    unavailable=PagerDutyUnavailableError,
                    refused=PagerDutyRequestError,
                    hints={
                        400: "; PagerDuty says the event is invalid",
                        404: "; check the Events API address (host) of the connection",
                    },
                    timeout=self.timeout,
                    max_attempts=self.max_attempts,
                    backoff_seconds=self.backoff_seconds,
                    max_backoff_seconds=self.max_backoff_seconds,
                    max_retry_after_seconds=self.max_backoff_seconds,
                    sleep=self._sleep,
                )
            except PagerDutyUnavailableError as exc:
                raise PagerDutyUnavailableError(
                    self._mask(str(exc)), retry_after=exc.retry_after, retryable=exc.retryable
                ) from None
            except PagerDutyRequestError as exc:
                raise PagerDutyRequestError(self._mask(str(exc)), status_code=exc.status_code) from None
        finally:
            session.close()
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not answer.get("dedup_key"):
            raise PagerDutyUnavailableError(
                f"{where} accepted {what} with HTTP {response.status_code} but its answer has no dedup_key: "
                f"{self._mask(response.text[:200])}",
                retryable=False,
            )
        self.log.info(
            "PagerDuty %s of %s accepted (HTTP %s, %d attempt(s))",
            event.action.value,
            answer["dedup_key"],
            response.status_code,
            sender.attempts,
        )
        return {**answer, "attempts": sender.attempts, "http_status": response.status_code}

    def test_connection(self) -> tuple[bool, str]:
        """The connection is complete (routing key, address); nothing is sent: a test event
        would page someone."""
        try:
            address = self.get_conn()
        except Exception as exc:
            return False, self._mask(str(exc))
        return True, f"routing key set; events go to {address}{ENQUEUE_PATH}"


__all__ = [
    "DEFAULT_EVENTS_URL",
    "PagerDutyRequestError",
    "PagerDutyUnavailableError",
    "ReconPagerDutyEventsHook",
]
