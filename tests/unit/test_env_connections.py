"""``AIRFLOW_CONN_*`` read without Airflow (hooks/env_connections.py): the same libpq
arguments as ``PostgresHook.get_conn``, and ``None`` whenever Airflow must decide."""

from __future__ import annotations

import json

import pytest

from airflow_recon_provider.hooks.env_connections import postgres_connect_kwargs
from airflow_recon_provider.reconciliation.errors import ConfigError

VAR = "AIRFLOW_CONN_BILLING_GATEWAY_DB"


def _kwargs(value: str, tmp_path, **env: str):
    return postgres_connect_kwargs("billing_gateway_db", {VAR: value, "AIRFLOW_HOME": str(tmp_path), **env})


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "postgresql://recon:s%40cret%2Fx@db.internal:6432/billing",
            {"host": "db.internal", "port": 6432, "user": "recon", "password": "s@cret/x",
             "dbname": "billing"},
        ),
        ("postgres://u@127.0.0.1/db", {"host": "127.0.0.1", "user": "u", "dbname": "db"}),
        (
            "billing-gateway://u:p@h:5432/db?sslmode=require&application_name=recon",
            {"host": "h", "port": 5432, "user": "u", "password": "p", "dbname": "db",
             "sslmode": "require", "application_name": "recon"},
        ),
        (
            "postgres://u@h/db?__extra__=" + '{"sslmode": "verify-full", "connect_timeout": 5}',
            {"host": "h", "user": "u", "dbname": "db", "sslmode": "verify-full", "connect_timeout": "5"},
        ),
        ("postgres://u@[::1]:5433/db", {"host": "::1", "port": 5433, "user": "u", "dbname": "db"}),
        # extras PostgresHook ignores are ignored here too
        ("postgres://u@h/db?sqlalchemy_scheme=postgresql", {"host": "h", "user": "u", "dbname": "db"}),
    ],
)  # fmt: skip
def test_uri_gives_what_postgres_hook_would(uri, expected, tmp_path):
    assert _kwargs(uri, tmp_path) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql://recon:s%40cret%2Fx@db.internal:6432/billing",
        "billing-gateway://u:p@h:5432/db?sslmode=require&application_name=recon",
        "postgres://u@h/db?__extra__=" + '{"sslmode": "verify-full", "connect_timeout": 5}',
        "postgres://u@h/db?sqlalchemy_scheme=postgresql",
    ],
)
def test_same_arguments_as_airflow_postgres_hook(uri, tmp_path, monkeypatch):
    """Airflow's own parsing and PostgresHook.get_conn, stopped just before it connects."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    monkeypatch.setenv(VAR, uri)
    seen = {}
    monkeypatch.setattr(PostgresHook, "_create_connection", lambda self, args: seen.update(args))
    PostgresHook(postgres_conn_id="billing_gateway_db").get_conn()
    airflow_args = {k: (str(v) if k not in ("port",) else v) for k, v in seen.items() if v is not None}
    assert _kwargs(uri, tmp_path) == airflow_args


def test_json_form(tmp_path):
    value = json.dumps(
        {"conn_type": "postgres", "host": "h", "login": "u", "password": "p", "schema": "db",
         "port": 5432, "extra": {"sslmode": "require"}}
    )  # fmt: skip
    assert _kwargs(value, tmp_path) == {
        "host": "h", "port": 5432, "user": "u", "password": "p", "dbname": "db", "sslmode": "require",
    }  # fmt: skip
    as_string = json.dumps({"conn_type": "postgres", "host": "h", "extra": '{"sslmode": "disable"}'})
    assert _kwargs(as_string, tmp_path) == {"host": "h", "sslmode": "disable"}


@pytest.mark.parametrize(
    "value",
    [
        "postgres://u@h/db?iam=true&aws_conn_id=aws",  # IAM tokens: the hook's job
        "postgres://u@h/db?cursor=realdictcursor",
        "mysql://u@h/db",  # not PostgreSQL
        "http://u@h/db",
        "postgres://https://host/db",  # a host with a protocol
        '{"conn_type": "postgres", "extra": "not json"}',
        "[not a connection]",
    ],
)
def test_anything_else_is_left_to_airflow(value, tmp_path):
    assert _kwargs(value, tmp_path) is None


def test_unset_variable_is_left_to_airflow(tmp_path):
    assert postgres_connect_kwargs("billing_gateway_db", {"AIRFLOW_HOME": str(tmp_path)}) is None


def test_a_secrets_backend_takes_precedence_over_the_environment(tmp_path):
    uri = "postgres://u@h/db"
    assert _kwargs(uri, tmp_path, AIRFLOW__SECRETS__BACKEND="x.Backend") is None
    (tmp_path / "airflow.cfg").write_text("[secrets]\nbackend = my.vault.Backend\n")
    assert _kwargs(uri, tmp_path) is None
    (tmp_path / "airflow.cfg").write_text("[secrets]\nbackend =\n[core]\ndags_folder = /x\n")
    assert _kwargs(uri, tmp_path) == {"host": "h", "user": "u", "dbname": "db"}


def test_a_port_that_is_not_a_number_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"AIRFLOW_CONN_BILLING_GATEWAY_DB: port 'x' is not a number"):
        _kwargs(json.dumps({"conn_type": "postgres", "host": "h", "port": "x"}), tmp_path)
