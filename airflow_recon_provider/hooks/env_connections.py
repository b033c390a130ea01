"""A PostgreSQL connection read from ``AIRFLOW_CONN_<ID>`` without importing Airflow.

``airflow-recon report`` and ``summary`` are read-only and often run for one small window;
importing Airflow to look a connection up costs them 2-3 s before the first query. When the
connection is an environment variable (a URI or Airflow's JSON form) and nothing could take
precedence over it, this module turns it into ``psycopg.connect`` keyword arguments exactly
as Airflow's ``PostgresHook.get_conn`` does (host, port, user, password, dbname, and the
extras as libpq parameters). In every other case it answers ``None`` and the caller goes
through Airflow (secrets backends, the metadata database, IAM tokens, ...):

- a secrets backend is configured (``[secrets] backend`` in the environment or in
  ``$AIRFLOW_HOME/airflow.cfg``): Airflow asks it before the environment;
- the connection type is not a PostgreSQL one, or the host carries a protocol;
- an extra is not a plain libpq parameter (``iam``, ``cursor``, ``aws_conn_id``, ...).
"""

from __future__ import annotations

import configparser
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from airflow_recon_provider.reconciliation.errors import ConfigError

#: connection types whose hooks are PostgresHook (``postgresql://`` is normalised to postgres)
POSTGRES_TYPES = frozenset({"postgres", "billing_gateway", "payments_ledger"})

#: extras passed to libpq as they are (what PostgresHook does with any extra it does not use)
LIBPQ_EXTRAS = frozenset(
    {
        "sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir",
        "sslnegotiation", "sslsni", "requirepeer", "gssencmode", "channel_binding",
        "connect_timeout", "application_name", "fallback_application_name", "options",
        "target_session_attrs", "load_balance_hosts", "client_encoding", "keepalives",
        "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
    }
)  # fmt: skip
#: extras PostgresHook ignores for the connection itself
IGNORED_EXTRAS = frozenset({"sqlalchemy_scheme", "sqlalchemy_query", "description"})


def env_var_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def _secrets_backend_configured(environ: os._Environ[str] | dict[str, str]) -> bool:
    if any(environ.get(f"AIRFLOW__SECRETS__BACKEND{suffix}") for suffix in ("", "_CMD", "_SECRET")):
        return True
    home = environ.get("AIRFLOW_HOME") or str(Path("~/airflow").expanduser())
    cfg_path = Path(environ.get("AIRFLOW_CONFIG") or Path(home) / "airflow.cfg")
    if not cfg_path.is_file():
        return False
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(cfg_path, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return True  # cannot tell: let Airflow read its own file
    return bool(parser.get("secrets", "backend", fallback="").strip())


def _from_uri(uri: str) -> dict[str, Any] | None:
    if uri.count("://") != 1:
        return None  # a host with a protocol, or not a URI: Airflow's parser decides
    parts = urlsplit(uri)
    conn_type = parts.scheme.replace("-", "_")
    if conn_type == "postgresql":
        conn_type = "postgres"
    extra: dict[str, Any] = {}
    if parts.query:
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if "__extra__" in query:
            try:
                loaded = json.loads(query["__extra__"])
            except json.JSONDecodeError:
                return None
            if not isinstance(loaded, dict):
                return None
            extra = loaded
        else:
            extra = query
    try:
        port = parts.port
    except ValueError:
        return None
    return {
        "conn_type": conn_type,
        "host": unquote(parts.hostname) if parts.hostname else None,
        "login": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "schema": unquote(parts.path[1:]) if parts.path[1:] else None,
        "port": port,
        "extra": extra,
    }


def _from_json(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    extra = data.get("extra") or {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except json.JSONDecodeError:
            return None
    if not isinstance(extra, dict):
        return None
    return {
        "conn_type": str(data.get("conn_type") or "").replace("-", "_").replace("postgresql", "postgres"),
        "host": data.get("host"),
        "login": data.get("login"),
        "password": data.get("password"),
        "schema": data.get("schema"),
        "port": data.get("port"),
        "extra": extra,
    }


def postgres_connect_kwargs(conn_id: str, environ: dict[str, str] | None = None) -> dict[str, Any] | None:
    """``psycopg.connect`` keyword arguments for ``conn_id`` from ``AIRFLOW_CONN_<ID>``, or
    ``None`` when Airflow must look the connection up itself (see the module docstring).

    :raises ConfigError: the variable is set but names a port that is not a number.
    """
    env = os.environ if environ is None else environ
    value = env.get(env_var_name(conn_id))
    if not value or _secrets_backend_configured(env):
        return None
    text = value.strip()
    conn = _from_json(text) if text.startswith("{") else _from_uri(text)
    if conn is None or conn["conn_type"] not in POSTGRES_TYPES:
        return None
    extra = {k: v for k, v in conn["extra"].items() if k not in IGNORED_EXTRAS}
    if any(key not in LIBPQ_EXTRAS for key in extra):
        return None
    port = conn["port"]
    if port not in (None, ""):
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{env_var_name(conn_id)}: port {port!r} is not a number; fix the connection"
            ) from None
    kwargs: dict[str, Any] = {
        "host": conn["host"] or None,
        "user": conn["login"] or None,
        "password": conn["password"] or None,
        "dbname": conn["schema"] or None,
        "port": port or None,
    }
    kwargs.update({k: str(v) for k, v in extra.items()})
    return {k: v for k, v in kwargs.items() if v is not None}


__all__ = ["env_var_name", "postgres_connect_kwargs"]
