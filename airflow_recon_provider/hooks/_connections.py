"""One translation of "this Airflow connection does not exist" into the provider's
:class:`ConnectionMissingError`, with a message that says how to create it."""

from __future__ import annotations

from airflow_recon_provider.reconciliation.errors import ConnectionMissingError


def is_missing_connection(exc: BaseException) -> bool:
    """True for Airflow's "connection not found" errors (their class moved between versions)."""
    return type(exc).__name__ in {"AirflowNotFoundException", "AirflowNotFound"} or "isn't defined" in str(
        exc
    )


def missing_connection_error(conn_id: str, how: str = "create it in the UI") -> ConnectionMissingError:
    return ConnectionMissingError(
        f"Airflow connection {conn_id!r} is not defined; {how} or set AIRFLOW_CONN_{conn_id.upper()}"
    )
