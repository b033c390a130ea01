"""HTTP plumbing shared by the PSP and billing-gateway-core hooks: a bearer-token auth whose
repr hides the token, error texts that never carry it, and one request sent with bounded
retries (tenacity) that turns every failure into a specific, actionable error."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import requests
import tenacity
from requests.auth import AuthBase

from airflow_recon_provider.reconciliation.errors import (
    ConfigError,
    ServiceRequestError,
    ServiceUnavailableError,
)

if TYPE_CHECKING:
    from airflow.providers.http.hooks.http import HttpHook

#: hints for the 4xx answers every JSON API of the runbook can give
TOKEN_HINT = "; check the API token (password) of the connection"


class BearerToken(AuthBase):
    """``Authorization: Bearer <token>``; its repr never shows the token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerToken(***)"


def setting(value: Any, name: str, *, integer: bool = False, zero: bool = False) -> float:
    """A timeout or retry setting of an HTTP hook, checked: a positive number (``zero``: a
    number >= 0; ``integer``: an integer of at least 1). Connection extras given in a URI are
    text, so a numeric text is read too. :class:`ConfigError` names the setting otherwise."""
    if isinstance(value, str):
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            pass
    ok = not isinstance(value, bool) and isinstance(value, int if integer else int | float)
    if not ok or value != value or value < 0 or (value == 0 and not zero) or value == float("inf"):
        kind = "an integer of at least 1" if integer else "a number >= 0" if zero else "a positive number"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")
    return value


def excerpt(text: str, limit: int = 200, *, auth: object = None) -> str:
    """The start of a response body for an error message; the bearer token of ``auth`` is
    replaced by ``***`` (a server that echoes the request's token must not put it in errors)."""
    token = getattr(auth, "_token", None)
    if token:
        text = text.replace(token, "***")
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def connection_failure(exc: requests.ConnectionError) -> str:
    """The part of a connection error a person can act on (requests nests the socket error
    deep in its message)."""
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    return match.group(1).strip() if match else type(exc).__name__


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); ``None``
    when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def send_with_retries(
    hook: HttpHook,
    session: requests.Session,
    prepared: requests.PreparedRequest,
    *,
    where: str,
    what: str,
    unavailable: type[ServiceUnavailableError],
    refused: type[ServiceRequestError],
    hints: Mapping[int, str],
    timeout: float,
    max_attempts: int,
    backoff_seconds: float,
    max_backoff_seconds: float,
    max_retry_after_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> requests.Response:
    """Send ``prepared`` until it is answered, at most ``max_attempts`` times.

    A timeout, a refused connection, HTTP 429 and 5xx are *unavailable* and retried with
    exponential backoff; with ``max_retry_after_seconds`` set, a ``Retry-After`` is honoured
    up to that bound (a longer one is not retried). Another HTTP >= 300 is *refused*, with
    the hint of its status, and never retried. Error texts name ``where`` and ``what`` and
    show a short excerpt of the body, without the bearer token.
    """

    def attempt() -> requests.Response:
        try:
            response = hook.run_and_check(session, prepared, {"timeout": timeout, "check_response": False})
        except requests.Timeout:
            raise unavailable(f"{where} did not answer {what} within {timeout:g} s") from None
        except requests.ConnectionError as exc:
            raise unavailable(f"{where} is unreachable for {what}: {connection_failure(exc)}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            message = f"{where} answered HTTP {status} {response.reason} to {what}"
            retry_after = None
            if max_retry_after_seconds is not None:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is not None and retry_after > max_retry_after_seconds:
                    raise unavailable(
                        f"{message} and asked to retry after {retry_after:g} s, longer than the "
                        f"{max_retry_after_seconds:g} s this task waits; try again later",
                        retry_after=retry_after,
                        retryable=False,
                    )
            raise unavailable(
                f"{message}: {excerpt(response.text, auth=session.auth)}", retry_after=retry_after
            )
        if status >= 300:
            raise refused(
                f"{where} refused {what}: HTTP {status} {response.reason}{hints.get(status, '')}: "
                f"{excerpt(response.text, auth=session.auth)}",
                status_code=status,
            )
        return response

    exponential = tenacity.wait_exponential(multiplier=backoff_seconds, max=max_backoff_seconds)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = exc.retry_after if isinstance(exc, ServiceUnavailableError) else None
        return float(retry_after) if retry_after is not None else exponential(state)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        hook.log.warning(
            "%s (attempt %d of %d); retrying in %.1f s",
            state.outcome.exception() if state.outcome else "unavailable",
            state.attempt_number,
            max_attempts,
            state.next_action.sleep if state.next_action else 0.0,
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda exc: isinstance(exc, unavailable) and exc.retryable),
        stop=tenacity.stop_after_attempt(max_attempts),
        wait=wait,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except unavailable as exc:
        if max_attempts == 1 or not exc.retryable:
            raise
        raise unavailable(
            f"{exc} (gave up after {max_attempts} attempts)", retry_after=exc.retry_after
        ) from None
