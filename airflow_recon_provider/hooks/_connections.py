"""One translation of "this Airflow connection does not exist" into the provider's
:class:`ConnectionMissingError`, with a message that says how to create it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_recon_provider.reconciliation.errors import ConfigError, ConnectionMissingError


def is_missing_connection(exc: BaseException) -> bool:
    """True for Airflow's "connection not found" errors (their class moved between versions)."""
    return type(exc).__name__ in {"AirflowNotFoundException", "AirflowNotFound"} or "isn't defined" in str(
        exc
    )


def check_header_extras(headers: Mapping[str, Any], conn_id: str) -> None:
    """Refuse HTTP header extras that requests/httpx would refuse later with the value in
    the message (a line break, NUL or leading whitespace: header injection, or a secret
    header pasted with its newline), naming the header, never its value."""
    for name, value in headers.items():
        text = str(value)
        if any(c in f"{name}{text}" for c in "\r\n\x00") or text[:1].isspace():
            raise ConfigError(
                f"Airflow connection {conn_id!r}: extra {str(name)!r} is not a valid HTTP header "
                "(line break, NUL or leading whitespace in it); fix the connection's extra"
            )


def missing_connection_error(conn_id: str, how: str = "create it in the UI") -> ConnectionMissingError:
    return ConnectionMissingError(
        f"Airflow connection {conn_id!r} is not defined; {how} or set AIRFLOW_CONN_{conn_id.upper()}"
    )
