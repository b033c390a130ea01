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

import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

import requests
import tenacity
from airflow.providers.http.hooks.http import HttpHook
from requests.auth import AuthBase

from airflow_recon_provider.reconciliation.config import PspConfig, check_psp_name
from airflow_recon_provider.reconciliation.errors import ConnectionMissingError
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
    from airflow_recon_provider.reconciliation.window import Window


class _BearerToken(AuthBase):
    """``Authorization: Bearer <token>``; its repr never shows the token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerToken(***)"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _excerpt(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def _connection_failure(exc: requests.ConnectionError) -> str:
    # requests nests the socket error deep in its message: keep the part a person can act on
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    return match.group(1).strip() if match else type(exc).__name__


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
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer of at least 1, got {max_attempts!r}")
        if backoff_seconds < 0 or max_backoff_seconds < 0:
            raise ValueError("backoff_seconds and max_backoff_seconds must not be negative")
        if max_pages < 1:
            raise ValueError(f"max_pages must be at least 1, got {max_pages!r}")
        super().__init__(method="GET", http_conn_id=psp_conn_id or self.default_conn_name, **kwargs)
        self.psp_conn_id = psp_conn_id
        self.timeout = float(timeout)
        self.max_attempts = max_attempts
        self.backoff_seconds = float(backoff_seconds)
        self.max_backoff_seconds = float(max_backoff_seconds)
        self.max_pages = max_pages

    # -- connection ------------------------------------------------------------------------
    def _extract_auth(self, connection: Any) -> Any | None:
        token = connection.password
        return _BearerToken(token) if token else None

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

    def _session_for(self, conn_id: str) -> requests.Session:
        """A requests session on ``conn_id``; a missing connection says how to define it."""
        self.http_conn_id = conn_id
        self._base_url_initialized = False
        self.base_url = ""
        try:
            session = self.get_conn(headers={"Accept": "application/json"})
        except Exception as exc:
            if type(exc).__name__ in {
                "AirflowNotFoundException",
                "AirflowNotFound",
            } or "isn't defined" in str(exc):
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

        def attempt() -> requests.Response:
            try:
                response = self.run_and_check(
                    session, prepared, {"timeout": self.timeout, "check_response": False}
                )
            except requests.Timeout:
                raise PspUnavailableError(
                    f"{where} did not answer {what} within {self.timeout:g} s"
                ) from None
            except requests.ConnectionError as exc:
                raise PspUnavailableError(
                    f"{where} is unreachable for {what}: {_connection_failure(exc)}"
                ) from None
            status = response.status_code
            if status == 429 or status >= 500:
                raise PspUnavailableError(
                    f"{where} answered HTTP {status} {response.reason} to {what}: {_excerpt(response.text)}"
                )
            if status >= 300:
                hint = {
                    401: "; check the API token (password) of the connection",
                    403: "; check the API token (password) of the connection",
                    404: "; check the PSP API base URL (host) of the connection",
                }.get(status, "")
                raise PspRequestError(
                    f"{where} refused {what}: HTTP {status} {response.reason}{hint}: "
                    f"{_excerpt(response.text)}"
                )
            return response

        def before_sleep(state: tenacity.RetryCallState) -> None:
            self.log.warning(
                "%s (attempt %d of %d); retrying in %.1f s",
                state.outcome.exception() if state.outcome else "PSP unavailable",
                state.attempt_number,
                self.max_attempts,
                state.next_action.sleep if state.next_action else 0.0,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(PspUnavailableError),
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=tenacity.wait_exponential(multiplier=self.backoff_seconds, max=self.max_backoff_seconds),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            response = retrying(attempt)
        except PspUnavailableError as exc:
            if self.max_attempts == 1:
                raise
            raise PspUnavailableError(f"{exc} (gave up after {self.max_attempts} attempts)") from None
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise StatementFormatError(
                f"{where} answered {what} with a body that is not valid JSON ({exc}): "
                f"{_excerpt(response.text, 120)!r}"
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
        base = {"psp": psp, "from": _iso(cycle.start), "to": _iso(cycle.end)}
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


__all__ = ["PspHook", "PspRequestError", "PspUnavailableError", "StatementFormatError"]
