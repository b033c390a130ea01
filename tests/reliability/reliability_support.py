"""Helpers of the reliability tests (importable by name; conftest modules are not).

- :func:`table_checksums`: a digest of every table of the gateway database (runbook tables,
  ``ledger`` and the ``recon`` schema), computed inside PostgreSQL, to prove that a refused
  input or a failed step changed nothing;
- :data:`FIGURES`: what the session injected and measured (faults, crashes survived, bad
  inputs, corrections lost / duplicated), printed at the end of the run and written as
  JSON when ``RECON_RELIABILITY_REPORT`` names a file (docs/reliability.md quotes them);
- :class:`TcpProxy`: a TCP relay between a client and PostgreSQL that can hold the server's
  bytes back, so a test can catch a COPY in the middle of its stream;
- :func:`wait_for_backend`: wait (no timing assertion) until a backend is blocked on a
  lock inside a given statement, seen in ``pg_stat_activity``.

The data-correction scenario and the SIGKILL harness of ``tests/corrections`` are reused
(``correction_data``, ``test_crash_safety``): their folder is put on ``sys.path`` here.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

TESTS_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = TESTS_DIR.parent
for _sub in ("corrections", "dags", "remediation", "incidents"):
    _path = str(TESTS_DIR / _sub)
    if _path not in sys.path:
        sys.path.append(_path)

#: how many seeded crash runs (SIGKILL) the crash loop makes; 50+ on demand
RUNS_ENV = "RECON_RELIABILITY_CRASH_RUNS"
#: the same, under its earlier name
RUNS_ENV_ALIAS = "RECON_RELIABILITY_RUNS"
DEFAULT_RUNS = 9
#: divergent rows generated against the correction row cap: 10^6 on demand (about six minutes
#: on a loaded 2-core machine), fewer by default so the folder stays within a few minutes in CI
BIG_ROWS_ENV = "RECON_RELIABILITY_BIG_ROWS"
DEFAULT_BIG_ROWS = 50_000
#: base seed of the crash loop (run i uses SEED + i)
SEED_ENV = "RECON_RELIABILITY_SEED"
DEFAULT_SEED = 20261120
REPORT_ENV = "RECON_RELIABILITY_REPORT"


def crash_runs() -> int:
    return max(1, int(os.environ.get(RUNS_ENV) or os.environ.get(RUNS_ENV_ALIAS) or DEFAULT_RUNS))


def crash_seed() -> int:
    return int(os.environ.get(SEED_ENV, DEFAULT_SEED))


def big_rows() -> int:
    return max(2, int(os.environ.get(BIG_ROWS_ENV, DEFAULT_BIG_ROWS)))


# -- checksums -------------------------------------------------------------------------------

_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2
"""


def table_checksums(conn: psycopg.Connection) -> dict[str, str]:
    """``{"schema.table": "<rows>:<digest>"}`` for every table of the database (gateway
    tables, ``ledger``, ``recon``). The digest is order-independent (two 64-bit hashes of
    each row's text form, summed as numeric), computed by the server, so it costs one scan
    per table even at millions of rows."""
    from psycopg import sql

    sums: dict[str, str] = {}
    for schema, table in conn.execute(_TABLES).fetchall():
        row = conn.execute(
            sql.SQL(
                "SELECT count(*), COALESCE(sum(hashtextextended(t::text, 0)::numeric), 0),"
                " COALESCE(sum(hashtextextended(t::text, 1)::numeric), 0) FROM {} AS t"
            ).format(sql.Identifier(schema, table))
        ).fetchone()
        sums[f"{schema}.{table}"] = f"{row[0]}:{row[1]}:{row[2]}"
    return sums


def changed_tables(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Tables whose checksum differs (or that appeared or disappeared)."""
    return sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))


# -- figures -----------------------------------------------------------------------------------


@dataclass
class Figures:
    """What this session injected and measured; printed at the end of the run."""

    faults: Counter = field(default_factory=Counter)
    bad_inputs: Counter = field(default_factory=Counter)
    crash_points: Counter = field(default_factory=Counter)
    crashes_survived: int = 0
    crash_states: Counter = field(default_factory=Counter)
    corrections_expected: int = 0
    corrections_lost: int = 0
    corrections_duplicated: int = 0
    secrets_scanned: Counter = field(default_factory=Counter)
    lock = threading.Lock()

    def fault(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.faults[kind] += n

    def bad_input(self, surface: str, n: int = 1) -> None:
        with self.lock:
            self.bad_inputs[surface] += n

    def as_dict(self) -> dict[str, Any]:
        return {
            "faults_injected": sum(self.faults.values()),
            "faults_by_kind": dict(sorted(self.faults.items())),
            "crashes_survived": self.crashes_survived,
            "crash_points": dict(sorted(self.crash_points.items())),
            "state_found_after_crash": dict(sorted(self.crash_states.items())),
            "corrections_expected": self.corrections_expected,
            "corrections_lost": self.corrections_lost,
            "corrections_duplicated": self.corrections_duplicated,
            "bad_inputs_tried": sum(self.bad_inputs.values()),
            "bad_inputs_by_surface": dict(sorted(self.bad_inputs.items())),
            "secret_scans": dict(sorted(self.secrets_scanned.items())),
        }

    def empty(self) -> bool:
        return not (self.faults or self.bad_inputs or self.crashes_survived or self.secrets_scanned)

    def lines(self) -> list[str]:
        d = self.as_dict()
        return [
            f"faults injected: {d['faults_injected']} {d['faults_by_kind']}",
            f"crashes survived (SIGKILL of the applying process): {d['crashes_survived']} "
            f"at {d['crash_points']}; state found before the retry: {d['state_found_after_crash']}",
            f"corrections: {d['corrections_expected']} expected, {d['corrections_lost']} lost, "
            f"{d['corrections_duplicated']} duplicated",
            f"bad inputs tried: {d['bad_inputs_tried']} {d['bad_inputs_by_surface']}",
            f"secret scans: {d['secret_scans']}",
        ]

    def write(self) -> None:
        target = os.environ.get(REPORT_ENV)
        if target:
            Path(target).write_text(json.dumps(self.as_dict(), indent=2) + "\n")


FIGURES = Figures()


# -- waiting on PostgreSQL ----------------------------------------------------------------------


def wait_for_backend(
    monitor: psycopg.Connection,
    fragment: str,
    *,
    wait_event_type: str = "Lock",
    exclude: set[int] | None = None,
    timeout: float = 60.0,
) -> int:
    """The pid of a backend of this database blocked (``wait_event_type``) in a statement
    containing ``fragment``; waits for it (never a timing assertion: the deadline only
    turns a hang into a failure)."""
    deadline = time.monotonic() + timeout
    exclude = exclude or set()
    while time.monotonic() < deadline:
        rows = monitor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND wait_event_type = %s AND position(%s in query) > 0",
            (wait_event_type, fragment),
        ).fetchall()
        pids = [r[0] for r in rows if r[0] not in exclude]
        if pids:
            return pids[0]
        time.sleep(0.02)
    raise AssertionError(f"no backend ever waited ({wait_event_type}) in a statement with {fragment!r}")


def granted_advisory_locks(monitor: psycopg.Connection, pid: int) -> int:
    (n,) = monitor.execute(
        "SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND granted", (pid,)
    ).fetchone()
    return int(n)


# -- a TCP relay that can hold PostgreSQL's bytes back --------------------------------------------


class TcpProxy:
    """Relay 127.0.0.1:<port> to ``upstream``. After :meth:`hold_after` bytes from the server,
    the relay stops reading from it: the server's socket buffer fills and its backend blocks
    in ``ClientWrite`` — a stream caught in the middle, deterministically. :meth:`release`
    lets the bytes flow again (and passes on the server's end of the connection)."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._hold_after: int | None = None
        self._flowing = threading.Event()
        self._flowing.set()
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self.server_bytes = 0
        self.held = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def hold_after(self, n_bytes: int) -> None:
        """Count the server's bytes from now; stop relaying them after ``n_bytes``."""
        self.server_bytes = 0
        self.held.clear()
        self._hold_after = n_bytes

    def release(self) -> None:
        self._hold_after = None
        self._flowing.set()

    def close(self) -> None:
        self._stop.set()
        self._flowing.set()
        self._listener.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        try:
            while not self._stop.is_set():
                if from_server and self._hold_after is not None and self.server_bytes >= self._hold_after:
                    self._flowing.clear()
                    self.held.set()
                    self._flowing.wait()
                    continue
                ready, _, _ = select.select([source], [], [], 0.2)
                if not ready:
                    continue
                limit = 65536
                if from_server and self._hold_after is not None:
                    limit = max(1, min(limit, self._hold_after - self.server_bytes))
                data = source.recv(limit)
                if not data:
                    break
                if from_server:
                    self.server_bytes += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


# -- secrets -------------------------------------------------------------------------------------


def find_secrets(text: str | bytes, secrets: dict[str, str]) -> list[str]:
    """Names of the secrets that occur in ``text`` (bytes are searched as UTF-8 and latin-1)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace") + text.decode("latin-1")
    return sorted(name for name, value in secrets.items() if value and value in text)


def scan_tree(root: Path, secrets: dict[str, str]) -> dict[str, list[str]]:
    """``{file: [secret names]}`` of every file under ``root`` that holds a secret."""
    found: dict[str, list[str]] = {}
    if not root.exists():
        return found
    for path in root.rglob("*"):
        if path.is_file():
            hits = find_secrets(path.read_bytes(), secrets)
            if hits:
                found[str(path)] = hits
    return found


def scan_database(conn: psycopg.Connection, secrets: dict[str, str]) -> dict[str, list[str]]:
    """``{"schema.table": [secret names]}`` of every table whose rows hold a secret."""
    from psycopg import sql

    found: dict[str, list[str]] = {}
    for schema, table in conn.execute(_TABLES).fetchall():
        rows = conn.execute(
            sql.SQL("SELECT t::text FROM {} AS t").format(sql.Identifier(schema, table))
        ).fetchall()
        hits = find_secrets("\n".join(r[0] for r in rows), secrets)
        if hits:
            found[f"{schema}.{table}"] = hits
    return found


__all__ = [
    "FIGURES",
    "TcpProxy",
    "big_rows",
    "changed_tables",
    "crash_runs",
    "crash_seed",
    "find_secrets",
    "granted_advisory_locks",
    "scan_database",
    "scan_tree",
    "table_checksums",
    "wait_for_backend",
]
