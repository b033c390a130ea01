"""What the provider's triggers do off the triggerer's event loop: first imports of their
I/O modules and the reading of the reconciliation configuration.

Airflow's triggerer imports a trigger class and calls its ``__init__`` on the event loop
thread, and every DAG that builds a trigger (the divergence watch builds one at parse
time) imports the trigger module too. So a trigger module imports only the light domain
modules at its top; psycopg (~0.2 s), the HTTP hooks (~0.25 s) and the configuration file
are loaded here, in a worker thread, on the first poll: a blocked loop would delay every
other trigger of the triggerer (Airflow logs "async thread was blocked").
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from types import ModuleType

from airflow_recon_provider.reconciliation.config import ReconConfig

#: psycopg and the provider's async PostgreSQL access (the DB triggers)
ASYNC_POSTGRES = "airflow_recon_provider.hooks.async_postgres"
#: the composed SQL (imports psycopg.sql)
QUERIES = "airflow_recon_provider.reconciliation.queries"
#: the recovery criteria's figures (the ledger's alignment with the statements)
RECOVERY = "airflow_recon_provider.reconciliation.recovery"
#: the PSP hook (the http provider, requests, httpx)
PSP_HOOK = "airflow_recon_provider.hooks.psp"
#: the Task SDK reads of DAG run and task states
DAG_RUNS = "airflow_recon_provider.hooks.dag_runs"

_ASYNC_HTTP = "<httpx async stack>"

#: modules fully imported by :func:`import_off_loop` (a module in ``sys.modules`` may still
#: be executing in another thread; its name is added here only once the import returned)
_loaded: set[str] = set()


async def import_off_loop(name: str) -> ModuleType:
    """The module ``name``, imported in a worker thread the first time.

    Once imported, the module comes from ``sys.modules`` with no thread hop. Two triggers
    asking at once both wait in worker threads (Python's import lock serialises them),
    never on the event loop.
    """
    if name not in _loaded:
        await asyncio.to_thread(importlib.import_module, name)
        _loaded.add(name)
    return sys.modules[name]


#: what httpx's async client imports on its first request (anyio loads most of its API
#: lazily, and its asyncio backend on first use); a module another version moved is skipped
_ASYNC_HTTP_MODULES = (
    "anyio.lowlevel",
    "anyio.abc",
    "anyio.streams.memory",
    "anyio.streams.stapled",
    "anyio.streams.tls",
    "anyio._backends._asyncio",
    "httpcore._async",
    "httpcore._backends.anyio",
)


def _load_async_http() -> None:
    import anyio

    for name in getattr(anyio, "__all__", ()):
        getattr(anyio, name, None)
    for name in _ASYNC_HTTP_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue


async def prepare_async_http() -> None:
    """Import httpx's async stack (anyio, httpcore) in a worker thread, once: otherwise
    the first health check of the process imports it on the event loop (~0.1 s)."""
    if _ASYNC_HTTP not in _loaded:
        await asyncio.to_thread(_load_async_http)
        _loaded.add(_ASYNC_HTTP)


async def load_config() -> ReconConfig:
    """:meth:`ReconConfig.load` (``$RECON_CONFIG``: inline JSON or a file) in a worker
    thread, so that the file read and the JSON parsing never run on the event loop. Read
    at every poll, as before: an edited configuration file applies from the next poll."""
    return await asyncio.to_thread(ReconConfig.load)


__all__ = [
    "ASYNC_POSTGRES",
    "DAG_RUNS",
    "PSP_HOOK",
    "QUERIES",
    "RECOVERY",
    "import_off_loop",
    "load_config",
    "prepare_async_http",
]
