"""Peak RSS and time of `airflow-recon report` / `summary` as the table grows.

Seeds one divergent PSP with N gateway transactions (plus statement lines and a
healthy PSP beside it), then runs the CLI as a child process over the whole seeded
window and reads the child's own peak RSS from ``wait4``. The report streams through a
server-side cursor, so RSS should follow the fetch batch, not N.

    .venv/bin/python benchmarks/report_memory.py --rows 100000 1000000
    .venv/bin/python benchmarks/report_memory.py --rows 1000000 \
        --pg-url postgresql://postgres@127.0.0.1:5432/postgres

Prints one markdown table row per size (paste into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from airflow_recon_provider.devtools.seed import SeedSpec, seed_database
from airflow_recon_provider.schema import create_runbook_tables, migrate


def _airflow_uri(url: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    return (
        f"postgresql://{info.get('user') or 'postgres'}@{info.get('host') or '127.0.0.1'}:"
        f"{info.get('port') or 5432}/{info['dbname']}"
    )


def run_child(argv: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """Run argv, discard stdout (counting lines); return seconds, peak RSS KiB, lines."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lines = 0
    assert proc.stdout is not None
    for _ in proc.stdout:
        lines += 1
    err = proc.stderr.read().decode() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[2]} failed: {err.strip()}")
    return elapsed, usage.ru_maxrss, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--pg-url", default=os.environ.get("RECON_TEST_PG_URL"))
    parser.add_argument("--rate", type=float, default=0.05)
    args = parser.parse_args()

    server = None
    if args.pg_url:
        admin = args.pg_url
        engine = "system PostgreSQL"
    else:
        from airflow_recon_provider.devtools.embedded_postgres import EmbeddedPostgres

        server = EmbeddedPostgres(Path(tempfile.gettempdir()) / "recon-bench-pg")
        admin = server.start()
        engine = "embedded PostgreSQL"
    with psycopg.connect(admin, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    print(
        f"machine: {platform.node()} {os.cpu_count()} CPU, {engine} {version}, "
        f"Python {platform.python_version()}"
    )
    print(
        "| gateway rows (divergent PSP) | divergent keys | report s | report peak RSS MiB "
        "| summary s | summary peak RSS MiB |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for rows in args.rows:
        name = f"recon_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = psycopg.conninfo.make_conninfo(admin, dbname=name)
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                create_runbook_tables(conn)
                migrate(conn)
                spec = SeedSpec(
                    seed=7,
                    psps=("stripe", "adyen"),
                    rows_per_psp=rows,
                    divergence_rate={"stripe": args.rate, "adyen": 0.0},
                )
                result = seed_database(conn, conn, spec)
                conn.execute("VACUUM ANALYZE")
            window = result.window
            env = dict(os.environ, AIRFLOW_CONN_BILLING_GATEWAY_DB=_airflow_uri(url))
            env.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="recon-bench-home-"))
            common = [
                "--psp",
                "stripe",
                "--window-start",
                window.start.isoformat(),
                "--window-end",
                window.end.isoformat(),
            ]
            cli = [sys.executable, "-m", "airflow_recon_provider.cli"]
            run_child([*cli, "summary", *common], env)  # warm the cache
            r_time, r_rss, lines = run_child([*cli, "report", *common, "--format", "jsonl"], env)
            s_time, s_rss, _ = run_child([*cli, "summary", *common], env)
            print(
                f"| {rows:,} | {lines:,} | {r_time:.2f} | {r_rss / 1024:.0f} "
                f"| {s_time:.2f} | {s_rss / 1024:.0f} |",
                flush=True,
            )
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    if server is not None:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
