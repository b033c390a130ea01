"""PSP health: what a PSP's health endpoint says, and every way asking it can fail.

Runbook, Investigação 4 ("Dependências Externas"): confirm the PSP APIs are available by
running, from a billing-gateway pod::

    kubectl exec -n billing-gateway deploy/billing-gateway -- \\
      curl -sS https://<psp-health-endpoint>/status | jq '.status'

The answer is always one :class:`HealthOutcome`, never a silent pass: the JSON ``status``
goes through a status mapping to healthy / degraded / down (a status the mapping does not
know is ``unknown_status``, not healthy), and a check that got no usable answer says why
(timeout, HTTP error, connection refused, unreachable, malformed JSON, or the check itself
could not run).

Pure domain: no Airflow, no HTTP, no Kubernetes. The PSP hook turns an HTTP answer (or
the output of ``curl`` run inside a pod, see :func:`curl_health_argv` and
:func:`parse_curl_output`) into a :class:`HealthCheck` with the same functions, so both
ways of checking classify alike.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_recon_provider.names import KUBERNETES_CONN_ID
from airflow_recon_provider.reconciliation.errors import ConfigError


class HealthOutcome(StrEnum):
    """The result of one health check of one PSP."""

    #: the PSP says it is up
    HEALTHY = "healthy"
    #: the PSP says it works with reduced service
    DEGRADED = "degraded"
    #: the PSP says it is down
    DOWN = "down"
    #: the PSP answered a ``status`` the status mapping does not know
    UNKNOWN_STATUS = "unknown_status"
    #: no answer within the time limit
    TIMEOUT = "timeout"
    #: an HTTP status outside 2xx (the code is in ``http_status``)
    HTTP_ERROR = "http_error"
    #: the PSP's host refused the TCP connection
    CONNECTION_REFUSED = "connection_refused"
    #: name resolution, routing, TLS or another network failure
    UNREACHABLE = "unreachable"
    #: 2xx, but not a JSON object with a text ``status``
    MALFORMED_JSON = "malformed_json"
    #: the check itself could not run (bad endpoint URL, no pod to exec into, no curl in it)
    PROBE_ERROR = "probe_error"

    @property
    def stated_by_psp(self) -> bool:
        """True when the PSP answered with a status of its own (mapped or not)."""
        return self in _STATED


_STATED = frozenset(
    {HealthOutcome.HEALTHY, HealthOutcome.DEGRADED, HealthOutcome.DOWN, HealthOutcome.UNKNOWN_STATUS}
)
#: outcomes a status mapping may map a PSP status to
MAPPABLE_OUTCOMES: tuple[HealthOutcome, ...] = (
    HealthOutcome.HEALTHY,
    HealthOutcome.DEGRADED,
    HealthOutcome.DOWN,
)

#: PSP ``status`` values (compared case-insensitively) and what they mean.
DEFAULT_STATUS_MAPPING: Mapping[str, HealthOutcome] = {
    **dict.fromkeys(("ok", "up", "healthy", "pass", "operational", "green"), HealthOutcome.HEALTHY),
    **dict.fromkeys(
        ("degraded", "partial", "partial_outage", "slow", "warn", "yellow"), HealthOutcome.DEGRADED
    ),
    **dict.fromkeys(
        ("down", "outage", "major_outage", "error", "fail", "unhealthy", "red"), HealthOutcome.DOWN
    ),
}

#: where the HTTP status trailer of the in-pod ``curl`` starts (see :func:`curl_health_argv`)
CURL_TRAILER = "__recon_psp_health__"
_TRAILER = re.compile(
    r"(?:\A|\n)" + re.escape(CURL_TRAILER) + r" http_code=(\d{3}) time_total=([0-9]+(?:[.,][0-9]+)?)\s*\Z"
)
# curl exit codes that mean the network, not the check, failed
# (5 proxy, 6 host name, 35 TLS handshake, 47 redirects, 52 empty reply,
# 55/56 send/receive, 60 certificate)
_CURL_NETWORK_EXITS = frozenset({5, 6, 35, 47, 52, 55, 56, 60})
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _norm(status: str) -> str:
    return status.strip().casefold()


def status_mapping(custom: Mapping[str, str] | None = None) -> dict[str, HealthOutcome]:
    """The effective status mapping: the defaults with ``custom`` on top.

    :param custom: PSP status -> ``healthy`` | ``degraded`` | ``down``; keys are compared
        case-insensitively and win over the defaults.
    :raises ConfigError: a key that is not a non-empty text, or a value that is not one of
        the three outcomes a PSP can state.
    """
    mapping = dict(DEFAULT_STATUS_MAPPING)
    if custom is None:
        return mapping
    if not isinstance(custom, Mapping):
        raise ConfigError(f"the health status mapping must map texts to outcomes, got {custom!r}")
    allowed = ", ".join(MAPPABLE_OUTCOMES)
    for key, value in custom.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"health status mapping: a PSP status must be a non-empty text, got {key!r}")
        try:
            outcome = HealthOutcome(value)
        except ValueError:
            outcome = None
        if outcome not in MAPPABLE_OUTCOMES:
            raise ConfigError(f"health status mapping: {key!r} maps to {value!r}; use one of {allowed}")
        mapping[_norm(key)] = outcome
    return mapping


def parse_outcomes(values: str | Iterable[str] | None, *, name: str) -> frozenset[HealthOutcome]:
    """A set of outcomes from names (``"healthy"`` or ``["healthy", "degraded"]``)."""
    if values is None:
        return frozenset()
    items = [values] if isinstance(values, str) else list(values)
    outcomes = set()
    for item in items:
        try:
            outcomes.add(HealthOutcome(item))
        except ValueError:
            raise ConfigError(
                f"{name}: {item!r} is not a health outcome; use one of {', '.join(HealthOutcome)}"
            ) from None
    return frozenset(outcomes)


def wait_and_fail_sets(
    wait_for: str | Iterable[str] | None, fail_on: str | Iterable[str] | None
) -> tuple[frozenset[HealthOutcome], frozenset[HealthOutcome]]:
    """Validate a sensor's ``wait_for`` (outcomes that end the wait; default healthy) and
    ``fail_on`` (outcomes that fail at once); they must not overlap."""
    wait = parse_outcomes(wait_for, name="wait_for") if wait_for is not None else {HealthOutcome.HEALTHY}
    fail = parse_outcomes(fail_on, name="fail_on")
    if not wait:
        raise ConfigError("wait_for must name at least one health outcome, e.g. healthy")
    overlap = wait & fail
    if overlap:
        raise ConfigError(f"{', '.join(sorted(overlap))} cannot be in both wait_for and fail_on")
    return frozenset(wait), fail


def redact_url(url: str) -> str:
    """``url`` without user, password, query or fragment: safe for logs and XCom."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def excerpt(text: str | bytes, limit: int = 200) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "decimal number", str: "text", list: "list"}.get(
        type(value)
    )
    if value is None:
        return "null"
    return f"{excerpt(json.dumps(value), 60)} ({kind or type(value).__name__})"


@dataclass(frozen=True)
class HealthCheck:
    """One health check of one PSP.

    :param psp: the PSP checked.
    :param outcome: what the check found.
    :param detail: one sentence a person can act on.
    :param checked_at: when the check started (UTC).
    :param endpoint: the health URL asked, without credentials or query.
    :param via: ``http`` (from Airflow) or ``pod`` (curl inside the billing-gateway pod).
    :param http_status: the HTTP status code, when an HTTP answer came back.
    :param raw_status: the PSP's ``status`` value as sent, when there was one.
    :param latency_ms: time to the answer or to the failure, in milliseconds.
    """

    psp: str
    outcome: HealthOutcome
    detail: str
    checked_at: datetime
    endpoint: str = ""
    via: str = "http"
    http_status: int | None = None
    raw_status: str | None = None
    latency_ms: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", HealthOutcome(self.outcome))
        if self.checked_at.tzinfo is None:
            raise ValueError("checked_at must be timezone-aware")
        object.__setattr__(self, "checked_at", self.checked_at.astimezone(UTC))
        if self.latency_ms is not None:
            object.__setattr__(self, "latency_ms", round(float(self.latency_ms), 1))

    @property
    def healthy(self) -> bool:
        return self.outcome is HealthOutcome.HEALTHY

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON (for XCom and trigger events)."""
        return {
            "psp": self.psp,
            "outcome": self.outcome.value,
            "http_status": self.http_status,
            "raw_status": self.raw_status,
            "latency_ms": self.latency_ms,
            "detail": self.detail,
            "endpoint": self.endpoint,
            "via": self.via,
            "checked_at": self.checked_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HealthCheck:
        return cls(
            psp=data["psp"],
            outcome=HealthOutcome(data["outcome"]),
            detail=data["detail"],
            checked_at=datetime.fromisoformat(data["checked_at"]),
            endpoint=data.get("endpoint") or "",
            via=data.get("via") or "http",
            http_status=data.get("http_status"),
            raw_status=data.get("raw_status"),
            latency_ms=data.get("latency_ms"),
        )

    def describe(self) -> str:
        """One log line: outcome, what was asked, and why."""
        facts = []
        if self.http_status is not None:
            facts.append(f"HTTP {self.http_status}")
        if self.raw_status is not None:
            facts.append(f"status {self.raw_status!r}")
        if self.latency_ms is not None:
            facts.append(f"{self.latency_ms:g} ms")
        where = f" via {self.via} {self.endpoint}" if self.endpoint else f" via {self.via}"
        facts_text = ", ".join(facts) or "no answer"
        return f"PSP {self.psp} health{where}: {self.outcome.value} ({facts_text}): {self.detail}"


def _now(checked_at: datetime | None) -> datetime:
    return checked_at or datetime.now(UTC)


def failure(
    psp: str,
    outcome: HealthOutcome,
    detail: str,
    *,
    endpoint: str = "",
    via: str = "http",
    latency_ms: float | None = None,
    checked_at: datetime | None = None,
) -> HealthCheck:
    """A check that got no usable answer."""
    return HealthCheck(
        psp=psp,
        outcome=outcome,
        detail=detail,
        checked_at=_now(checked_at),
        endpoint=redact_url(endpoint) if endpoint else "",
        via=via,
        latency_ms=latency_ms,
    )


def _read_status(body: str | bytes) -> tuple[str | None, str | None]:
    """``(status, None)`` or ``(None, why the body is not a health document)``."""
    if not body.strip():
        return None, "the body is empty, not a JSON object with a status"
    try:
        document = json.loads(body)
    except ValueError:
        return None, f"the body is not JSON: {excerpt(body, 120)!r}"
    if not isinstance(document, dict):
        return None, f"the body is JSON but not an object: {_describe(document)}"
    if "status" not in document:
        keys = ", ".join(sorted(map(str, document))[:10]) or "none"
        return None, f"the JSON object has no 'status' field (fields: {keys})"
    status = document["status"]
    if not isinstance(status, str) or not status.strip():
        return None, f"'status' must be a non-empty text, got {_describe(status)}"
    return status, None


def _http_error_detail(code: int, body: str | bytes) -> str:
    text = excerpt(body, 120)
    tail = f": {text!r}" if text else ""
    if 500 <= code < 600:
        return f"the health endpoint answered HTTP {code} (server error, 5xx){tail}"
    if code in (401, 403):
        return f"HTTP {code} (client error, 4xx): check the API token (password) of the PSP connection{tail}"
    if code == 404:
        return (
            "HTTP 404 (client error, 4xx): no health endpoint there; check the base URL (host) and "
            f"the health endpoint path of the PSP connection{tail}"
        )
    if code == 429:
        return f"HTTP 429 (client error, 4xx): the PSP is rate-limiting the health checks{tail}"
    if 400 <= code < 500:
        return f"HTTP {code} (client error, 4xx){tail}"
    return f"unexpected HTTP {code} from the health endpoint{tail}"


def classify_response(
    *,
    psp: str,
    http_status: int,
    body: str | bytes,
    endpoint: str = "",
    via: str = "http",
    latency_ms: float | None = None,
    checked_at: datetime | None = None,
    mapping: Mapping[str, HealthOutcome] | None = None,
) -> HealthCheck:
    """Classify an HTTP answer of a PSP's health endpoint.

    2xx: the JSON ``status`` through the mapping (``unknown_status`` if not in it;
    ``malformed_json`` if there is no such text). Another HTTP status is ``http_error``,
    except when its body is a health document stating degraded or down (a 503 with
    ``{"status": "down"}`` is the PSP saying it is down); a non-2xx answer is never healthy.
    """
    mapping = DEFAULT_STATUS_MAPPING if mapping is None else mapping
    raw_status, problem = _read_status(body)
    mapped = mapping.get(_norm(raw_status)) if raw_status is not None else None

    def result(outcome: HealthOutcome, detail: str) -> HealthCheck:
        return HealthCheck(
            psp=psp,
            outcome=outcome,
            detail=detail,
            checked_at=_now(checked_at),
            endpoint=redact_url(endpoint) if endpoint else "",
            via=via,
            http_status=http_status,
            raw_status=raw_status,
            latency_ms=latency_ms,
        )

    if not 200 <= http_status < 300:
        if mapped in (HealthOutcome.DEGRADED, HealthOutcome.DOWN):
            return result(mapped, f"PSP reports status {raw_status!r} with HTTP {http_status}")
        return result(HealthOutcome.HTTP_ERROR, _http_error_detail(http_status, body))
    if problem is not None:
        return result(HealthOutcome.MALFORMED_JSON, problem)
    if mapped is None:
        known = ", ".join(sorted(mapping))
        return result(
            HealthOutcome.UNKNOWN_STATUS,
            f"PSP reports status {raw_status!r}, which the health status mapping does not know "
            f"(known: {excerpt(known, 160)}); treated as not healthy",
        )
    return result(mapped, f"PSP reports status {raw_status!r}")


def _chain(exc: BaseException) -> Iterable[BaseException]:
    """``exc`` and every exception it wraps (cause, context, ``reason``, exception args)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        stack.extend(item for item in linked if isinstance(item, BaseException))


def transport_outcome(exc: BaseException) -> tuple[HealthOutcome, str]:
    """Outcome and reason of a request that got no HTTP answer, from the socket error that
    an HTTP client's exception wraps: refused, timed out, or otherwise unreachable."""
    reason = None
    timed_out = False
    for item in _chain(exc):
        if isinstance(item, ConnectionRefusedError):
            return HealthOutcome.CONNECTION_REFUSED, item.strerror or "connection refused"
        if isinstance(item, TimeoutError):
            timed_out = True
        if isinstance(item, OSError) and item.strerror and reason is None:
            reason = item.strerror
    if timed_out:
        return HealthOutcome.TIMEOUT, reason or "timed out"
    return HealthOutcome.UNREACHABLE, reason or excerpt(str(exc) or type(exc).__name__, 160)


# -- in-pod check (the runbook's kubectl exec ... curl) ----------------------------------------
def _seconds(value: float) -> str:
    if not value or value <= 0 or not math.isfinite(value):
        raise ConfigError(f"timeout must be a positive number of seconds, got {value!r}")
    return f"{value:g}"


def check_header(name: str, value: str) -> str:
    """``Name: value`` for a request header; refuses line breaks (header injection)."""
    if not _HEADER_NAME.fullmatch(name):
        raise ConfigError(f"{name!r} is not a valid HTTP header name")
    if any(char in str(value) for char in "\r\n\x00"):
        raise ConfigError(f"the value of HTTP header {name!r} contains a line break")
    return f"{name}: {value}"


def curl_health_argv(url: str, *, timeout_seconds: float, headers_on_stdin: bool = False) -> list[str]:
    """The command run inside the billing-gateway pod: the runbook's ``curl -sS <url>``,
    bounded by ``--max-time``, plus a trailer line with the HTTP status and total time.

    Request headers (the bearer token, a connection's extra headers) never go in the
    command line, which the Kubernetes API server may record in its audit log and anyone
    in the pod can read from the process list. With ``headers_on_stdin`` the command is a
    small POSIX ``sh`` script that reads ``Name: value`` lines from stdin up to an empty
    line (see :func:`curl_stdin`; no end-of-file needed, which older exec protocols cannot
    send) and hands them to curl.
    """
    curl = [
        "curl",
        "-sS",
        "-L",
        "--max-redirs",
        "5",
        "--max-time",
        _seconds(timeout_seconds),
        "-H",
        "Accept: application/json",
        "-w",
        f"\\n{CURL_TRAILER} http_code=%{{http_code}} time_total=%{{time_total}}\\n",
    ]
    if not headers_on_stdin:
        return [*curl, "--url", url]
    script = (
        'url=$1; shift; while IFS= read -r line && [ -n "$line" ]; do set -- "$@" -H "$line"; done; '
        f'exec {shlex.join(curl)} "$@" --url "$url"'
    )
    return ["sh", "-c", script, "psp-health", url]


def curl_stdin(headers: Mapping[str, str]) -> str:
    """What :func:`curl_health_argv` with ``headers_on_stdin`` reads: one header per line,
    then an empty line."""
    return "".join(check_header(name, value) + "\n" for name, value in headers.items()) + "\n"


def parse_curl_output(
    *,
    psp: str,
    returncode: int | None,
    stdout: str,
    stderr: str,
    endpoint: str,
    timeout_seconds: float | None = None,
    exec_latency_ms: float | None = None,
    checked_at: datetime | None = None,
    mapping: Mapping[str, HealthOutcome] | None = None,
) -> HealthCheck:
    """Classify what the command of :func:`curl_health_argv` printed and returned.

    :param returncode: the command's exit code; ``None`` when it did not finish.
    :param exec_latency_ms: wall time of the exec, used when curl reported no time of its own.
    """
    via = "pod"
    body, code, seconds = stdout, None, None
    if (match := _TRAILER.search(stdout)) is not None:
        body = stdout[: match.start()]
        code, seconds = int(match.group(1)), float(match.group(2).replace(",", "."))
    latency = seconds * 1000 if seconds is not None else exec_latency_ms
    err = excerpt(stderr, 200)

    def failed(outcome: HealthOutcome, detail: str) -> HealthCheck:
        return failure(
            psp, outcome, detail, endpoint=endpoint, via=via, latency_ms=latency, checked_at=checked_at
        )

    if returncode is None:
        return failed(HealthOutcome.PROBE_ERROR, "the check did not finish inside the pod in time")
    if returncode == 0:
        if code is None:
            return failed(
                HealthOutcome.PROBE_ERROR,
                f"curl printed no HTTP status line; output: {excerpt(stdout, 120)!r}",
            )
        return classify_response(
            psp=psp,
            http_status=code,
            body=body,
            endpoint=endpoint,
            via=via,
            latency_ms=latency,
            checked_at=checked_at,
            mapping=mapping,
        )
    if returncode == 28:
        limit = f" {timeout_seconds:g} s" if timeout_seconds else ""
        return failed(
            HealthOutcome.TIMEOUT, f"no answer within the time limit{limit} ({err or 'curl exit 28'})"
        )
    if returncode == 7:
        # curl 7 is "could not connect"; recent curls no longer say whether the port refused
        # or the route failed, and a refused port is what it almost always is for a PSP
        return failed(HealthOutcome.CONNECTION_REFUSED, f"{err or 'could not connect'} (curl exit 7)")
    if returncode in _CURL_NETWORK_EXITS:
        return failed(HealthOutcome.UNREACHABLE, f"{err or 'network failure'} (curl exit {returncode})")
    if returncode == 127:
        return failed(HealthOutcome.PROBE_ERROR, "curl (or sh) is not installed in the container (exit 127)")
    if returncode == 126:
        return failed(HealthOutcome.PROBE_ERROR, "curl is not executable in the container (exit 126)")
    return failed(
        HealthOutcome.PROBE_ERROR, f"curl failed with exit code {returncode}: {err or 'no message'}"
    )


@dataclass(frozen=True)
class PodExecTarget:
    """Where the in-pod check runs: ``kubectl exec -n <namespace> <workload> -c <container>``.

    :param kubernetes_conn_id: Airflow connection of the cluster (cncf-kubernetes).
    :param namespace: the billing gateway's namespace.
    :param workload: ``deploy/<name>`` (a ready pod of the deployment, as kubectl picks),
        or ``pod/<name>``.
    :param container: the container; default: the pod's default container.
    """

    kubernetes_conn_id: str = KUBERNETES_CONN_ID
    namespace: str = "billing-gateway"
    workload: str = "deploy/billing-gateway"
    container: str | None = None

    def __post_init__(self) -> None:
        kind, _, name = self.workload.partition("/")
        if kind not in {"deploy", "deployment", "pod", "po"} or not name:
            raise ConfigError(
                f"workload {self.workload!r} must be deploy/<name> or pod/<name>, e.g. deploy/billing-gateway"
            )
        if not self.namespace:
            raise ConfigError("the namespace of the in-pod health check must not be empty")

    @property
    def kind(self) -> str:
        """``deployment`` or ``pod``."""
        return "pod" if self.workload.partition("/")[0] in {"pod", "po"} else "deployment"

    @property
    def name(self) -> str:
        return self.workload.partition("/")[2]

    def as_dict(self) -> dict[str, Any]:
        return {
            "kubernetes_conn_id": self.kubernetes_conn_id,
            "namespace": self.namespace,
            "workload": self.workload,
            "container": self.container,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PodExecTarget:
        return cls(**dict(data or {}))

    def __str__(self) -> str:
        container = f" -c {self.container}" if self.container else ""
        return f"kubectl exec -n {self.namespace} {self.workload}{container}"


__all__ = [
    "CURL_TRAILER",
    "DEFAULT_STATUS_MAPPING",
    "MAPPABLE_OUTCOMES",
    "HealthCheck",
    "HealthOutcome",
    "PodExecTarget",
    "classify_response",
    "curl_health_argv",
    "curl_stdin",
    "failure",
    "parse_curl_output",
    "parse_outcomes",
    "redact_url",
    "status_mapping",
    "transport_outcome",
    "wait_and_fail_sets",
]
