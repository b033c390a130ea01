"""Reliability tests: real faults against real parts (issue 9, docs/reliability.md).

Fixtures of ``tests/conftest.py`` are used as they are (``pg_url``, ``db_url``, ``db``,
``airflow_conns``, ``airflow_db``, ``register_dag``). Added here:

- ``dedicated_pg``: a PostgreSQL server of this folder alone (EmbeddedPostgres, data in a
  temp dir that is *not* under pytest's basetemp), which the tests may stop and start, and
  whose ``pg_hba.conf`` asks every role but ``postgres`` for a password (SCRAM), so that
  database passwords and the least-privilege role are real;
- ``dedicated_db``: a fresh database on it with the runbook tables and the ``recon`` schema.

At the end of the run the figures of :data:`reliability_support.FIGURES` are printed (and
written as JSON to ``$RECON_RELIABILITY_REPORT`` when set).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_support import FIGURES

_HBA = """\
# written by tests/reliability/conftest.py: postgres without a password, every other role
# with SCRAM (the least-privilege role and the secret-scan tests use real passwords)
local   all  all                     trust
host    all  postgres  127.0.0.1/32  trust
host    all  postgres  ::1/128       trust
host    all  all       127.0.0.1/32  scram-sha-256
host    all  all       ::1/128       scram-sha-256
"""


@dataclass
class DedicatedPostgres:
    server: object
    data_dir: Path

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, database: str = "postgres", *, user: str = "postgres", password: str | None = None) -> str:
        return psycopg.conninfo.make_conninfo(
            host="127.0.0.1", port=self.port, dbname=database, user=user, password=password
        )

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()  # same port: EmbeddedPostgres keeps it

    def running(self) -> bool:
        try:
            psycopg.connect(self.url(), connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False


@pytest.fixture(scope="session")
def dedicated_pg():
    from airflow_recon_provider.devtools.embedded_postgres import EmbeddedPostgres
    from airflow_recon_provider.schema import create_runbook_tables, migrate

    # not under pytest's basetemp (another session's pruning would delete a running server)
    data_dir = Path(tempfile.mkdtemp(prefix="recon-reliability-pg-"))
    server = EmbeddedPostgres(data_dir)
    server.start()
    handle = DedicatedPostgres(server, data_dir)
    try:
        (data_dir / "pgdata" / "pg_hba.conf").write_text(_HBA)
        with psycopg.connect(handle.url(), autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("CREATE DATABASE recon_rel_template")
        with psycopg.connect(handle.url("recon_rel_template"), autocommit=True) as conn:
            create_runbook_tables(conn)
            migrate(conn)
        yield handle
    finally:
        if not handle.running():
            try:
                handle.start()
            except Exception:
                pass
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def dedicated_db(dedicated_pg):
    """Name of a fresh database on ``dedicated_pg`` (runbook tables + recon schema)."""
    name = f"recon_rel_{uuid.uuid4().hex[:10]}"
    if not dedicated_pg.running():
        dedicated_pg.start()
    with psycopg.connect(dedicated_pg.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE recon_rel_template").format(sql.Identifier(name)))
    yield name
    if not dedicated_pg.running():
        dedicated_pg.start()
    with psycopg.connect(dedicated_pg.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if FIGURES.empty():
        return
    terminalreporter.section("reliability figures (docs/reliability.md)")
    for line in FIGURES.lines():
        terminalreporter.write_line(line)
    FIGURES.write()
