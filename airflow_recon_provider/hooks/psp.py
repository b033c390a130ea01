"""Hook on a PSP's API (connection ``psp_<name>``, connection type ``psp``).

Runbook, Contexto: the hourly reconciliation reads each PSP's statement for the cycle
(task ``fetch_psp_statements``). The statement is validated strictly
(:mod:`airflow_recon_provider.reconciliation.statements`) before anything is written.

Failure modes have their own errors: :class:`PspUnavailableError` (HTTP 5xx or 429,
timeout, connection refused: retried a bounded number of times with exponential
backoff, then raised), :class:`PspRequestError` (other HTTP 4xx: not retried),
:class:`StatementFormatError` (a payload that is not a valid statement).
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import requests
from airflow.providers.http.hooks.http import HttpHook

from airflow_recon_provider.hooks._async_connections import aget_connection
from airflow_recon_provider.hooks._connections import check_header_extras, is_missing_connection
from airflow_recon_provider.hooks._http import (
    TOKEN_HINT,
    BearerToken,
    excerpt,
    iso,
    send_with_retries,
    setting,
)
from airflow_recon_provider.reconciliation import health
from airflow_recon_provider.reconciliation.config import PspConfig, check_psp_name
from airflow_recon_provider.reconciliation.errors import ConfigError, ConnectionMissingError
from airflow_recon_provider.reconciliation.health import HealthCheck, HealthOutcome, PodExecTarget
from airflow_recon_provider.reconciliation.statements import (
    PspRequestError,
    PspStatement,
    PspUnavailableError,
    StatementFormatError,
    StatementPage,
    assemble_statement,
    parse_statement_page,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_recon_provider.hooks.pod_exec import PodExec
    from airflow_recon_provider.reconciliation.window import Window

#: connection extra with the health endpoint: a path under the base URL, or a full URL
HEALTH_ENDPOINT_EXTRA = "health_endpoint"
DEFAULT_HEALTH_ENDPOINT = "status"
# connection extras the HTTP provider reads as request options, not as headers
_NOT_HEADERS = frozenset(
    {
        "stream",
        "cert",
        "proxies",
        "proxy",
        "timeout",
        "verify",
        "verify_ssl",
        "allow_redirects",
        "max_redirects",
        "trust_env",
        "check_response",
        "srv_lookup",
        HEALTH_ENDPOINT_EXTRA,
    }
)


def _missing_connection(conn_id: str) -> ConnectionMissingError:
    return ConnectionMissingError(
        f"Airflow connection {conn_id!r} is not defined; create it (type psp, host = the PSP "
        f"API base URL, password = API token) or set AIRFLOW_CONN_{conn_id.upper()}"
    )


@functools.lru_cache(maxsize=16)
def _tls_verify(value: bool | str) -> bool | ssl.SSLContext:
    """What httpx gets for the connection's ``verify`` extra: ``False``, or a TLS context
    (the default CA bundle, or the CA bundle file named). Loading CA files is blocking
    file I/O: the trigger calls this in a worker thread, and each setting is built once."""
    import httpx

    if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0", "yes", "no"}:
        value = value.strip().lower() in {"true", "1", "yes"}
    if isinstance(value, str):
        return ssl.create_default_context(cafile=value)
    return httpx.create_ssl_context() if value else False


@dataclass(frozen=True)
class HealthRequest:
    """The GET a health check sends: URL, headers (the connection's extra headers and
    ``Accept``) and the bearer token, kept apart so that it is never logged (not in repr)."""

    url: str
    headers: dict[str, str]
    token: str | None = field(default=None, repr=False)
    verify: bool | str = True

    def headers_with_token(self) -> dict[str, str]:
        if not self.token:
            return dict(self.headers)
        return {**self.headers, "Authorization": f"Bearer {self.token}"}


def _verify_setting(value: Any) -> bool | str:
    return value if isinstance(value, str) else bool(value)


def _invalid_url(exc: Exception) -> str:
    return (
        f"the health endpoint URL is invalid ({exc}); check the connection's host and {HEALTH_ENDPOINT_EXTRA}"
    )


class PspHook(HttpHook):
    """Read a PSP's statements API.

    The connection's host is the API base URL (``https://api.psp.example/v1``; a host
    without a scheme means https); its password, when set, is sent as a bearer token.
    Extra fields are sent as HTTP headers (HttpHook behaviour).

    :param psp_conn_id: Airflow connection of the PSP API; when omitted, each call uses
        the PSP's own connection ``psp_<name>``.
    :param timeout: seconds to wait for the API to connect and to answer, per request.
    :param max_attempts: attempts per request when the PSP is unavailable (5xx, 429,
        timeout, connection refused), at least 1.
    :param backoff_seconds: first wait between attempts; doubles on each retry.
    :param max_backoff_seconds: longest wait between attempts.
    :param max_pages: most pages one statement may have (a guard against a pagination loop).
    """

    conn_name_attr = "psp_conn_id"
    default_conn_name = "psp_default"
    conn_type = "psp"
    hook_name = "PSP API"

    statements_endpoint = "statements"
    _health_endpoint = DEFAULT_HEALTH_ENDPOINT

    def __init__(
        self,
        psp_conn_id: str | None = None,
        *,
        timeout: float = 30.0,
        max_attempts: int = 3,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
        max_pages: int = 1000,
        **kwargs: Any,
    ) -> None:
        self.timeout = float(setting(timeout, "timeout"))
        self.max_attempts = int(setting(max_attempts, "max_attempts", integer=True))
        self.backoff_seconds = float(setting(backoff_seconds, "backoff_seconds", zero=True))
        self.max_backoff_seconds = float(setting(max_backoff_seconds, "max_backoff_seconds", zero=True))
        self.max_pages = int(setting(max_pages, "max_pages", integer=True))
        super().__init__(method="GET", http_conn_id=psp_conn_id or self.default_conn_name, **kwargs)
        self.psp_conn_id = psp_conn_id

    # -- connection ------------------------------------------------------------------------
    def _extract_auth(self, connection: Any) -> Any | None:
        token = connection.password
        return BearerToken(token) if token else None

    def _set_base_url(self, connection: Any) -> None:
        super()._set_base_url(connection)
        # HttpHook takes the URL scheme from the (hidden) schema field and defaults to http;
        # a PSP connection without an explicit scheme talks https, never cleartext.
        if (
            connection.conn_type == self.conn_type
            and "://" not in (connection.host or "")
            and not connection.schema
            and self.base_url.startswith("http://")
        ):
            self.base_url = "https://" + self.base_url[len("http://") :]
        endpoint = connection.extra_dejson.get(HEALTH_ENDPOINT_EXTRA)
        self._health_endpoint = (
            endpoint.strip() if isinstance(endpoint, str) and endpoint.strip() else DEFAULT_HEALTH_ENDPOINT
        )

    def _configure_session_from_extra(
        self, session: Any, connection: Any, extra_options: dict[str, Any]
    ) -> Any:
        session = super()._configure_session_from_extra(session, connection, extra_options)
        # a setting of this provider, not a header for the PSP
        session.headers.pop(HEALTH_ENDPOINT_EXTRA, None)
        check_header_extras(session.headers, connection.conn_id)
        return session

    def _session_for(self, conn_id: str) -> requests.Session:
        """A requests session on ``conn_id``; a missing connection says how to define it."""
        self.http_conn_id = conn_id
        self._base_url_initialized = False
        self.base_url = ""
        try:
            session = self.get_conn(headers={"Accept": "application/json"})
        except Exception as exc:
            if is_missing_connection(exc):
                raise ConnectionMissingError(
                    f"Airflow connection {conn_id!r} is not defined; create it (type psp, host = the PSP "
                    f"API base URL, password = API token) or set AIRFLOW_CONN_{conn_id.upper()}"
                ) from None
            raise
        return session

    # -- requests ----------------------------------------------------------------------------
    def _get_json(
        self, session: requests.Session, endpoint: str, params: dict[str, str], *, what: str
    ) -> Any:
        """GET ``endpoint`` and decode its JSON body, retrying while the PSP is unavailable."""
        url = self.url_from_endpoint(endpoint)
        prepared = session.prepare_request(requests.Request("GET", url, params=params))
        where = f"PSP API {self.base_url} (connection {self.http_conn_id})"

        response = send_with_retries(
            self,
            session,
            prepared,
            where=where,
            what=what,
            unavailable=PspUnavailableError,
            refused=PspRequestError,
            hints={
                401: TOKEN_HINT,
                403: TOKEN_HINT,
                404: "; check the PSP API base URL (host) of the connection",
            },
            timeout=self.timeout,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
            max_backoff_seconds=self.max_backoff_seconds,
        )
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise StatementFormatError(
                f"{where} answered {what} with a body that is not valid JSON ({exc}): "
                f"{excerpt(response.text, 120, auth=session.auth)!r}"
            ) from None

    # -- statements ------------------------------------------------------------------------
    def fetch_statement(self, psp: str, cycle: Window) -> PspStatement:
        """The PSP's statement for ``cycle``: every page of
        ``GET statements?psp=<psp>&from=<ISO>&to=<ISO>[&page=<token>]``, validated.

        :raises PspUnavailableError: 5xx/429, timeout or connection refused, after retries.
        :raises PspRequestError: another 4xx answer.
        :raises StatementFormatError: a page that is not a valid statement of the cycle.
        """
        check_psp_name(psp)
        session = self._session_for(self.psp_conn_id or PspConfig(name=psp).connection_id)
        base = {"psp": psp, "from": iso(cycle.start), "to": iso(cycle.end)}
        pages: list[StatementPage] = []
        seen_tokens: set[str] = set()
        token: str | None = None
        first_line = 1
        try:
            while True:
                number = len(pages) + 1
                params = {**base, "page": token} if token is not None else base
                payload = self._get_json(
                    session, self.statements_endpoint, params, what=f"statements page {number} of PSP {psp}"
                )
                page = parse_statement_page(payload, psp=psp, cycle=cycle, page=number, first_line=first_line)
                pages.append(page)
                first_line += len(page.lines)
                token = page.next_page
                if token is None:
                    break
                if token in seen_tokens:
                    raise StatementFormatError(
                        f"PSP {psp} statement pagination loops: page token {token!r} "
                        f"came back on page {number}"
                    )
                if number >= self.max_pages:
                    raise StatementFormatError(
                        f"PSP {psp} statement has more than {self.max_pages} pages; refusing to read on"
                    )
                seen_tokens.add(token)
        finally:
            session.close()
        statement = assemble_statement(psp, cycle, pages)
        self.log.info(
            "PSP %s statement %s for cycle %s: %d line(s) in %d page(s)",
            psp,
            statement.statement_id,
            cycle,
            len(statement.lines),
            statement.pages,
        )
        return statement

    # -- health (runbook, Investigação 4) ----------------------------------------------------
    def _conn_id_for(self, psp: str) -> str:
        return self.psp_conn_id or PspConfig(name=psp).connection_id

    def health_url(self) -> str:
        """The health endpoint of the current connection: ``<base URL>/status`` unless the
        connection extra ``health_endpoint`` names another path (or a full URL)."""
        endpoint = self._health_endpoint
        return endpoint if "://" in endpoint else self.url_from_endpoint(endpoint)

    def health_request(self, connection: Any) -> HealthRequest:
        """What a health check of ``connection`` sends, computed without any I/O (so the
        trigger can build it from a connection fetched asynchronously)."""
        self.http_conn_id = connection.conn_id or self.http_conn_id
        self._set_base_url(connection)
        extra = connection.extra_dejson
        headers = {str(key): str(value) for key, value in extra.items() if key not in _NOT_HEADERS}
        check_header_extras(headers, connection.conn_id)
        headers["Accept"] = "application/json"
        return HealthRequest(
            url=self.health_url(),
            headers=headers,
            token=connection.password or None,
            verify=_verify_setting(extra.get("verify", extra.get("verify_ssl", True))),
        )

    def check_health(
        self, psp: str, *, timeout: float | None = None, status_mapping: Mapping[str, str] | None = None
    ) -> HealthCheck:
        """``GET <health endpoint>`` of the PSP, once, and what it means.

        Every failure is an outcome of the returned check (timeout, HTTP error, connection
        refused, unreachable, malformed JSON), never an exception; no retry, since the
        sensor polls.

        :param psp: the PSP; its connection is ``psp_<name>`` unless the hook has one.
        :param timeout: seconds to wait for the connection and for the answer (default: the
            hook's ``timeout``).
        :param status_mapping: PSP status -> healthy | degraded | down, over the defaults.
        :raises UnknownPspError: ``psp`` is not a valid PSP name.
        :raises ConnectionMissingError: the PSP's connection is not defined.
        :raises ConfigError: an invalid status mapping or timeout (an invalid connection
            extra is the outcome ``probe_error``).
        """
        check_psp_name(psp)
        mapping = health.status_mapping(status_mapping)
        timeout = float(setting(self.timeout if timeout is None else timeout, "timeout"))
        checked_at = datetime.now(UTC)
        try:
            session = self._session_for(self._conn_id_for(psp))
        except ConfigError as exc:  # e.g. a header extra with a line break: a visible outcome
            return health.failure(
                psp, HealthOutcome.PROBE_ERROR, str(exc), endpoint="", checked_at=checked_at
            )
        url = self.health_url()
        started = time.monotonic()

        def elapsed() -> float:
            return (time.monotonic() - started) * 1000

        try:
            prepared = session.prepare_request(requests.Request("GET", url))
            settings = session.merge_environment_settings(
                prepared.url,
                proxies=session.proxies,
                stream=session.stream,
                verify=session.verify,
                cert=session.cert,
            )
            response = session.send(prepared, timeout=timeout, allow_redirects=True, **settings)
            body = response.content
        except requests.Timeout:
            return health.failure(
                psp,
                HealthOutcome.TIMEOUT,
                f"no answer within {timeout:g} s",
                endpoint=url,
                latency_ms=elapsed(),
                checked_at=checked_at,
            )
        except (
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
            requests.exceptions.InvalidURL,
        ) as exc:
            return health.failure(
                psp,
                HealthOutcome.PROBE_ERROR,
                _invalid_url(exc),
                endpoint=url,
                checked_at=checked_at,
            )
        except (requests.RequestException, OSError) as exc:
            outcome, reason = health.transport_outcome(exc)
            return health.failure(
                psp, outcome, reason, endpoint=url, latency_ms=elapsed(), checked_at=checked_at
            )
        finally:
            session.close()
        return health.classify_response(
            psp=psp,
            http_status=response.status_code,
            body=body,
            endpoint=url,
            latency_ms=elapsed(),
            checked_at=checked_at,
            mapping=mapping,
        )

    async def aget_psp_connection(self, psp: str) -> Any:
        """The PSP's Airflow connection, fetched without blocking the event loop."""
        conn_id = self._conn_id_for(psp)
        try:
            return await aget_connection(conn_id)
        except Exception as exc:
            if is_missing_connection(exc):
                raise _missing_connection(conn_id) from None
            raise

    def get_psp_connection(self, psp: str) -> Any:
        """The PSP's Airflow connection; a missing one says how to define it."""
        conn_id = self._conn_id_for(psp)
        try:
            return self.get_connection(conn_id)
        except Exception as exc:
            if is_missing_connection(exc):
                raise _missing_connection(conn_id) from None
            raise

    async def acheck_health(
        self,
        psp: str,
        *,
        timeout: float | None = None,
        status_mapping: Mapping[str, str] | None = None,
        connection: Any | None = None,
    ) -> HealthCheck:
        """:meth:`check_health` with httpx's async client, for the triggerer: the same
        request, the same classification, no blocking call.

        :param connection: the PSP connection when already fetched (default: fetched here
            with ``aget_connection``).
        """
        import httpx

        check_psp_name(psp)
        mapping = health.status_mapping(status_mapping)
        timeout = float(setting(self.timeout if timeout is None else timeout, "timeout"))
        if connection is None:
            connection = await self.aget_psp_connection(psp)
        request = self.health_request(connection)
        checked_at = datetime.now(UTC)
        started = time.monotonic()

        def elapsed() -> float:
            return (time.monotonic() - started) * 1000

        try:
            verify = await asyncio.to_thread(_tls_verify, request.verify)
            async with httpx.AsyncClient(timeout=timeout, verify=verify, follow_redirects=True) as client:
                response = await client.get(request.url, headers=request.headers_with_token())
                body = response.content
        except httpx.TimeoutException:
            return health.failure(
                psp,
                HealthOutcome.TIMEOUT,
                f"no answer within {timeout:g} s",
                endpoint=request.url,
                latency_ms=elapsed(),
                checked_at=checked_at,
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return health.failure(
                psp,
                HealthOutcome.PROBE_ERROR,
                _invalid_url(exc),
                endpoint=request.url,
                checked_at=checked_at,
            )
        except (httpx.HTTPError, OSError) as exc:
            outcome, reason = health.transport_outcome(exc)
            return health.failure(
                psp, outcome, reason, endpoint=request.url, latency_ms=elapsed(), checked_at=checked_at
            )
        return health.classify_response(
            psp=psp,
            http_status=response.status_code,
            body=body,
            endpoint=request.url,
            latency_ms=elapsed(),
            checked_at=checked_at,
            mapping=mapping,
        )

    def _pod_exec(self, target: PodExecTarget) -> PodExec:
        from airflow_recon_provider.hooks.pod_exec import PodExec

        return PodExec(target)

    def check_health_from_pod(
        self,
        psp: str,
        *,
        target: PodExecTarget | None = None,
        timeout: float | None = None,
        status_mapping: Mapping[str, str] | None = None,
        connection: Any | None = None,
    ) -> HealthCheck:
        """The runbook's own check: ``curl -sS <health endpoint>`` run inside the billing
        gateway pod (``kubectl exec -n billing-gateway deploy/billing-gateway``), so it sees
        the gateway's network, DNS and egress. The bearer token and extra headers reach
        curl through the exec's stdin, never its command line.

        Exec problems (no ready pod, exec refused by the API, no curl in the container) are
        the outcome ``probe_error``.

        :param target: where to exec (default: ``kubernetes_billing``, namespace
            ``billing-gateway``, ``deploy/billing-gateway``).
        :raises ConnectionMissingError: the PSP's or the cluster's connection is not defined.
        """
        from airflow_recon_provider.hooks.pod_exec import EXEC_GRACE_SECONDS, PodExecError

        check_psp_name(psp)
        mapping = health.status_mapping(status_mapping)
        timeout = float(setting(self.timeout if timeout is None else timeout, "timeout"))
        target = target or PodExecTarget()
        if connection is None:
            connection = self.get_psp_connection(psp)
        request = self.health_request(connection)
        checked_at = datetime.now(UTC)
        headers = {name: value for name, value in request.headers_with_token().items() if name != "Accept"}
        try:
            stdin = health.curl_stdin(headers) if headers else None
        except ConfigError as exc:
            return health.failure(
                psp,
                HealthOutcome.PROBE_ERROR,
                str(exc),
                endpoint=request.url,
                via="pod",
                checked_at=checked_at,
            )
        argv = health.curl_health_argv(
            request.url, timeout_seconds=timeout, headers_on_stdin=stdin is not None
        )
        try:
            result = self._pod_exec(target).run(argv, stdin=stdin, timeout=timeout + EXEC_GRACE_SECONDS)
        except PodExecError as exc:
            return health.failure(
                psp,
                HealthOutcome.PROBE_ERROR,
                f"{target}: {exc}",
                endpoint=request.url,
                via="pod",
                checked_at=checked_at,
            )
        self.log.info(
            "PSP %s health checked from pod %s/%s (container %s)",
            psp,
            target.namespace,
            result.pod,
            result.container,
        )
        return health.parse_curl_output(
            psp=psp,
            returncode=result.returncode,
            stdout=result.stdout,
            stderr=result.stderr,
            endpoint=request.url,
            timeout_seconds=timeout,
            exec_latency_ms=result.seconds * 1000,
            checked_at=checked_at,
            mapping=mapping,
        )


__all__ = [
    "HealthRequest",
    "PspHook",
    "PspRequestError",
    "PspUnavailableError",
    "StatementFormatError",
]
