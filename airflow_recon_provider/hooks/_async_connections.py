"""Airflow connections for code running on the triggerer's event loop.

``BaseHook.aget_connection`` (Task SDK) is the async lookup, but its first call in a
process imports the SDK's connection, cache and supervisor modules and builds the secrets
backends (a custom one, e.g. Vault or AWS Secrets Manager, creates and authenticates its
client there), all synchronously, on the event loop. :func:`aget_connection` does that
first part once per process in a worker thread, then awaits the SDK's async lookup.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any

from airflow.sdk import BaseHook

log = logging.getLogger(__name__)

#: what ``Connection.async_get`` imports on its first call (Task SDK 1.3)
_SDK_LOOKUP_MODULES = (
    "asgiref.sync",
    "airflow.sdk.definitions.connection",
    "airflow.sdk.execution_time.cache",
    "airflow.sdk.execution_time.context",
    "airflow.sdk.execution_time.supervisor",
)

_ready = False


def _prepare_lookup() -> None:
    """Import the SDK's lookup modules and build the secrets backends (cached by the SDK
    once a custom backend is configured). Best effort: a module that moved in another SDK
    version is imported by the lookup itself, and a backend that fails to build fails the
    lookup that follows with its own error."""
    for name in _SDK_LOOKUP_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            log.debug("Task SDK module %s not found; the connection lookup imports what it needs", name)
    try:
        from airflow.sdk.execution_time.supervisor import ensure_secrets_backend_loaded

        ensure_secrets_backend_loaded()
    except Exception as exc:  # reported by the lookup itself, with the connection id
        log.debug("secrets backends not prepared in advance: %s: %s", type(exc).__name__, exc)


async def aget_connection(conn_id: str) -> Any:
    """The Airflow connection ``conn_id``, looked up without blocking the event loop.

    :raises: what ``BaseHook.aget_connection`` raises (``AirflowNotFoundException`` for an
        undefined connection).
    """
    global _ready
    if not _ready:
        await asyncio.to_thread(_prepare_lookup)
        _ready = True
    return await BaseHook.aget_connection(conn_id)


__all__ = ["aget_connection"]
