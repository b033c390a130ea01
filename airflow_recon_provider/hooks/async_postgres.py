"""Async PostgreSQL access for triggers: psycopg 3 ``AsyncConnection`` built from an
Airflow connection fetched with the Task SDK's async API, so nothing blocks the
triggerer's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from airflow_recon_provider.reconciliation.errors import ConnectionMissingError, DatabaseUnavailableError

if TYPE_CHECKING:
    import psycopg

#: connection extras that are not libpq parameters (same list as the Postgres provider's)
_NOT_LIBPQ = {
    "iam",
    "redshift",
    "redshift-serverless",
    "cursor",
    "cluster-identifier",
    "workgroup-name",
    "aws_conn_id",
    "sqlalchemy_scheme",
    "sqlalchemy_query",
    "azure_conn_id",
}


def conninfo_kwargs(conn: Any) -> dict[str, Any]:
    """libpq keyword arguments of an Airflow connection (host, port, user, password, db, extras)."""
    kwargs: dict[str, Any] = {
        "host": conn.host,
        "port": conn.port,
        "user": conn.login,
        "password": conn.password,
        "dbname": conn.schema,
    }
    for key, value in (conn.extra_dejson or {}).items():
        if key not in _NOT_LIBPQ:
            kwargs[key] = value
    return {k: v for k, v in kwargs.items() if v not in (None, "")}


@asynccontextmanager
async def async_connect(conn_id: str, *, connect_timeout: int = 10) -> AsyncIterator[psycopg.AsyncConnection]:
    """An autocommit ``AsyncConnection`` in UTC to the database of ``conn_id``."""
    import psycopg
    from airflow.sdk import BaseHook

    try:
        connection = await BaseHook.aget_connection(conn_id)
    except Exception as exc:
        if "isn't defined" in str(exc) or type(exc).__name__.startswith("AirflowNotFound"):
            raise ConnectionMissingError(f"Airflow connection {conn_id!r} is not defined") from None
        raise
    try:
        aconn = await psycopg.AsyncConnection.connect(
            **conninfo_kwargs(connection), autocommit=True, connect_timeout=connect_timeout
        )
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DatabaseUnavailableError(
            f"database of connection {conn_id!r} is unreachable: {first}"
        ) from None
    try:
        await aconn.execute("SET TIME ZONE 'UTC'")
        yield aconn
    finally:
        await aconn.close()
