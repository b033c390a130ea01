"""Divergence detection benchmark (issue 7): the package against client-side tools.

Seeds, with the package's own generator, one database per size: two PSPs with N gateway
transactions each, ``stripe`` at 5% divergence and ``adyen`` at 0.1%. The hourly volume
is fixed (N / 24 at 1M), so a larger table means more hours of data, as in production:
1M rows span 24 hours, 5M rows 120 hours, 10M rows 240 hours. Then, on the same data in
the same run, it measures:

- ``airflow-recon report`` (all divergent keys streamed, jsonl) and ``summary`` as child
  processes over the whole window: wall time and the child's peak RSS (``wait4``);
- the polars and pandas client-side baselines (COPY both sides out, join, classify) and
  datacompy, in child processes (peak RSS);
- a bare ``count(*)`` scan of both sides' window rows (the physical floor);
- one hourly cycle (the sensor's and ``match_transactions``' unit: summary of one PSP
  over one hour, through ``BillingGatewayHook.summary``) on each table size;
- one divergence-sensor poll of 10 PSP checks (``DivergenceTrigger.poll_once``);
- DAG-file parse time and the package import time added to a task start.

Median of ``--repeat`` runs (warm cache: one unmeasured run first). Prints the table
and writes ``docs/benchmarks.md`` (``--output``).

    .venv/bin/python benchmarks/run.py                      # full: 1M, 5M, 10M (hours)
    .venv/bin/python benchmarks/run.py --quick              # 20k rows, 1 repetition
    .venv/bin/python benchmarks/run.py --pg-url postgresql://postgres@127.0.0.1:5432/postgres

Datasets are kept between runs (database ``recon_bench_<rows>`` with its spec stored in
``recon_bench_dataset``) and re-seeded only when the spec differs; ``--reseed`` forces it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from airflow_recon_provider.devtools.seed import SeedSpec, seed_database  # noqa: E402
from airflow_recon_provider.reconciliation.mapping import TableMapping  # noqa: E402
from airflow_recon_provider.schema import create_runbook_tables, migrate  # noqa: E402
from airflow_recon_provider.schema.migrations import enable_cycle_store  # noqa: E402

#: gateway rows per PSP and hour (1M rows = 24 hours)
ROWS_PER_HOUR = 1_000_000 // 24
PSP_RATES = {"stripe": 0.05, "adyen": 0.001}
SEED = 7
MIB = 1024 * 1024


def hours_for(rows: int) -> int:
    return max(24, round(rows / ROWS_PER_HOUR))


def dataset_spec(rows: int) -> SeedSpec:
    return SeedSpec(
        seed=SEED,
        psps=tuple(PSP_RATES),
        rows_per_psp=rows,
        divergence_rate=dict(PSP_RATES),
        hours=hours_for(rows),
        with_ledger=False,
        with_reconciliation_logs=True,
    )


def _db_url(admin: str, name: str) -> str:
    return psycopg.conninfo.make_conninfo(admin, dbname=name)


def ensure_dataset(
    admin: str, rows: int, *, reseed: bool = False, log: Callable[[str], None] = print
) -> dict:
    """The database of ``rows`` (created and seeded when missing or different); returns
    ``{"url", "seed_result", "seed_s"}``."""
    spec = dataset_spec(rows)
    name = f"recon_bench_{rows}"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _db_url(admin, name)
    with psycopg.connect(url, autocommit=True) as conn:
        stored = None
        if conn.execute("SELECT to_regclass('recon_bench_dataset') IS NOT NULL").fetchone()[0]:
            row = conn.execute("SELECT spec, result, seed_s FROM recon_bench_dataset").fetchone()
            if row is not None and row[0] == spec.as_dict() and not reseed:
                stored = {"url": url, "seed_result": row[1], "seed_s": row[2], "reused": True}
        if stored is not None:
            log(f"dataset {name}: reusing the seeded data ({rows:,} rows per PSP, {spec.hours} hours)")
            migrate(conn)  # a dataset seeded before the cycle store gets its migration (idempotent)
            enable_cycle_store(conn, TableMapping())  # opt-in; kept when already enabled
            return stored
        log(f"dataset {name}: seeding {rows:,} gateway rows per PSP over {spec.hours} hours ...")
        started = time.perf_counter()
        create_runbook_tables(conn)
        migrate(conn)
        enable_cycle_store(conn, TableMapping())
        result = seed_database(conn, conn, spec)
        conn.execute("VACUUM ANALYZE")
        seed_s = time.perf_counter() - started
        conn.execute("DROP TABLE IF EXISTS recon_bench_dataset")
        conn.execute("CREATE TABLE recon_bench_dataset (spec jsonb, result jsonb, seed_s float8)")
        payload = result.as_dict()
        payload.pop("expected_by_cycle", None)
        conn.execute(
            "INSERT INTO recon_bench_dataset VALUES (%s, %s, %s)",
            (json.dumps(spec.as_dict()), json.dumps(payload, default=str), seed_s),
        )
        log(f"dataset {name}: seeded in {seed_s:.0f} s")
        return {"url": url, "seed_result": payload, "seed_s": seed_s, "reused": False}


def start_server(args: argparse.Namespace) -> tuple[str, Any, str]:
    """Admin URI, the embedded server (or None) and a description of the engine."""
    if args.pg_url:
        return args.pg_url, None, "PostgreSQL (given by --pg-url)"
    from airflow_recon_provider.devtools.embedded_postgres import EmbeddedPostgres

    server = EmbeddedPostgres(Path(args.data_dir))
    return server.start(), server, "embedded PostgreSQL"


def main_seed_only(args: argparse.Namespace) -> int:
    admin, server, _ = start_server(args)
    try:
        for rows in args.sizes:
            ensure_dataset(admin, rows, reseed=args.reseed)
    finally:
        if server is not None and not args.keep_server:
            server.stop()
    return 0


# -- child processes ----------------------------------------------------------------------


def run_child(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, list[str]]:
    """Run ``argv``; return wall seconds, the child's peak RSS in MiB (``wait4``) and its
    last stdout lines (the rest is counted, not kept)."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    tail: list[str] = []
    lines = 0
    for raw in proc.stdout:
        lines += 1
        tail = [*tail[-2:], raw.decode(errors="replace").rstrip("\n")]
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed: {err.strip()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, [str(lines), *tail]


def _airflow_uri(url: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    return (
        f"postgresql://{info.get('user') or 'postgres'}@{info.get('host') or '127.0.0.1'}:"
        f"{info.get('port') or 5432}/{info['dbname']}"
    )


def child_env(url: str) -> dict[str, str]:
    env = dict(os.environ, AIRFLOW_CONN_BILLING_GATEWAY_DB=_airflow_uri(url))
    env.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="recon-bench-home-"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


# -- client-side baselines (run in a child process: `run.py --client polars ...`) -----------

GATEWAY_COPY = """COPY (
    SELECT i.provider_reference AS ref, t.transaction_type AS ttype, t.id, t.status, t.amount_minor,
           upper(t.currency) AS currency,
           (t.created_at >= %(start)s AND t.created_at < %(end)s)::int AS in_window
    FROM payment_transactions AS t JOIN payment_intents AS i ON i.id = t.intent_id
    WHERE i.provider = %(psp)s AND t.created_at >= %(wide_start)s AND t.created_at < %(wide_end)s
) TO STDOUT WITH (FORMAT csv, HEADER true)"""
STATEMENT_COPY = """COPY (
    SELECT l.provider_reference AS ref, l.transaction_type AS ttype, l.id, l.status, l.amount_minor,
           upper(l.currency) AS currency,
           (l.occurred_at >= %(start)s AND l.occurred_at < %(end)s)::int AS in_window
    FROM psp_statement_lines AS l
    WHERE l.psp = %(psp)s AND l.occurred_at >= %(wide_start)s AND l.occurred_at < %(wide_end)s
) TO STDOUT WITH (FORMAT csv, HEADER true)"""


def _copy_out(url: str, statement: str, params: dict) -> bytes:
    """Both sides leave the server as CSV through COPY (the fastest way out)."""
    buf = bytearray()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(sql.SQL(statement).format(), params) as copy:
            for chunk in copy:
                buf += chunk
    return bytes(buf)


def _window_params(psp: str, start: str, end: str) -> dict:
    s, e = datetime.fromisoformat(start), datetime.fromisoformat(end)
    return {
        "psp": psp,
        "start": s,
        "end": e,
        "wide_start": s - timedelta(hours=1),
        "wide_end": e + timedelta(hours=1),
    }


def client_polars(url: str, params: dict) -> int:
    import io

    import polars as pl

    def side(statement: str) -> pl.DataFrame:
        df = pl.read_csv(io.BytesIO(_copy_out(url, statement, params)))
        return (
            df.sort("id")
            .group_by("ref", "ttype")
            .agg(
                pl.len().alias("n"),
                pl.col("amount_minor").sum().alias("total"),
                pl.col("amount_minor").first().alias("first"),
                pl.col("status").min().alias("status"),
                pl.col("currency").min().alias("currency"),
                (pl.col("in_window") == 1).any().alias("in_window"),
            )
        )

    g, s = side(GATEWAY_COPY), side(STATEMENT_COPY)
    j = g.join(s, on=["ref", "ttype"], how="full", coalesce=True, suffix="_s")
    j = j.filter(pl.col("in_window").fill_null(False) | pl.col("in_window_s").fill_null(False))
    kind = (
        pl.when(pl.col("n") > 1)
        .then(pl.lit("duplicate_in_gateway"))
        .when(pl.col("n_s") > 1)
        .then(pl.lit("duplicate_in_statement"))
        .when(pl.col("n_s").is_null())
        .then(pl.lit("missing_in_statement"))
        .when(pl.col("n").is_null())
        .then(pl.lit("missing_in_gateway"))
        .when(pl.col("currency") != pl.col("currency_s"))
        .then(pl.lit("currency_mismatch"))
        .when(pl.col("total") != pl.col("total_s"))
        .then(pl.lit("amount_mismatch"))
        .when(pl.col("status") != pl.col("status_s"))
        .then(pl.lit("status_mismatch"))
    )
    out = j.with_columns(kind.alias("kind")).filter(pl.col("kind").is_not_null())
    return out.height


def client_pandas(url: str, params: dict) -> int:
    import io

    import numpy as np
    import pandas as pd

    def side(statement: str) -> pd.DataFrame:
        df = pd.read_csv(io.BytesIO(_copy_out(url, statement, params)))
        df = df.sort_values("id")
        # string min() per group is very slow in pandas 3; ordered categoricals (sorted
        # categories, codepoint order like COLLATE "C") give the same min on integer codes
        for column in ("status", "currency"):
            df[column] = pd.Categorical(df[column], ordered=True)
        out = df.groupby(["ref", "ttype"], sort=False).agg(
            n=("id", "size"),
            total=("amount_minor", "sum"),
            first=("amount_minor", "first"),
            status=("status", "min"),
            currency=("currency", "min"),
            in_window=("in_window", "any"),
        )
        for column in ("status", "currency"):
            out[column] = out[column].astype(object)
        return out

    g, s = side(GATEWAY_COPY), side(STATEMENT_COPY)
    j = g.join(s, how="outer", rsuffix="_s")
    j = j[j["in_window"].fillna(False).astype(bool) | j["in_window_s"].fillna(False).astype(bool)]
    conditions = [
        j["n"] > 1,
        j["n_s"] > 1,
        j["n_s"].isna(),
        j["n"].isna(),
        j["currency"] != j["currency_s"],
        j["total"] != j["total_s"],
        j["status"] != j["status_s"],
    ]
    kind = np.select(conditions, list(range(1, 8)), default=0)
    return int((kind > 0).sum())


def client_datacompy(url: str, params: dict) -> int:
    """datacompy's polars comparison on the key; divergent keys = rows only on one side
    plus rows with a differing column (duplicates are datacompy's own business)."""
    import io

    import polars as pl
    from datacompy import PolarsCompare

    g = pl.read_csv(io.BytesIO(_copy_out(url, GATEWAY_COPY, params))).drop("id", "in_window")
    s = pl.read_csv(io.BytesIO(_copy_out(url, STATEMENT_COPY, params))).drop("id", "in_window")
    cmp = PolarsCompare(g, s, join_columns=["ref", "ttype"], df1_name="gateway", df2_name="statement")
    return cmp.df1_unq_rows.height + cmp.df2_unq_rows.height + cmp.all_mismatch().height


CLIENTS: dict[str, Callable[[str, dict], int]] = {
    "polars": client_polars,
    "pandas": client_pandas,
    "datacompy": client_datacompy,
}


def main_client(args: argparse.Namespace) -> int:
    params = _window_params(args.psp, args.start, args.end)
    print(CLIENTS[args.client](args.url, params))
    return 0


# -- in-process measurements ----------------------------------------------------------------


def median_of(repeat: int, fn: Callable[[], Any], *, warm: bool = True) -> tuple[float, Any]:
    """Median seconds of ``repeat`` calls (after one unmeasured call when ``warm``) and the
    last result."""
    if warm:
        fn()
    times, result = [], None
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def bare_scan(url: str, params: dict) -> int:
    """count(*) of both sides' rows in the (grace-widened) window: the physical floor."""
    with psycopg.connect(url) as conn:
        g = conn.execute(
            "SELECT count(*) FROM payment_transactions AS t JOIN payment_intents AS i ON i.id = t.intent_id"
            " WHERE i.provider = %(psp)s AND t.created_at >= %(wide_start)s AND t.created_at < %(wide_end)s",
            params,
        ).fetchone()[0]
        s = conn.execute(
            "SELECT count(*) FROM psp_statement_lines WHERE psp = %(psp)s"
            " AND occurred_at >= %(wide_start)s AND occurred_at < %(wide_end)s",
            params,
        ).fetchone()[0]
    return int(g) + int(s)


@dataclass
class Row:
    rows: int
    rate: str
    case: str
    seconds: float | None
    rss_mib: float | None = None
    detail: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        rss = f"{row.rss_mib:.0f} MiB" if row.rss_mib is not None else ""
        secs = f"{row.seconds:.3f} s" if row.seconds is not None else "-"
        print(f"  {row.rows:>11,} {row.rate:>5} {row.case:<44} {secs:>11} {rss:>9}  {row.detail}", flush=True)

    def get(self, rows: int, rate: str, case: str) -> Row | None:
        return next((r for r in self.rows if (r.rows, r.rate, r.case) == (rows, rate, case)), None)


def store_cycles(url: str, rows: int, spec: SeedSpec, res: Results) -> None:
    """Classify and store every hourly cycle of every PSP, as ``match_transactions`` does each
    hour (``BillingGatewayHook.store_cycle``); cycles already stored and still clean are kept.
    The report, summary, hourly-cycle and sensor-poll cases then read the store."""
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.reconciliation import cycle_store
    from airflow_recon_provider.reconciliation.queries import ClassificationParams

    hook = BillingGatewayHook()
    for psp, rate in PSP_RATES.items():
        params = ClassificationParams(psp, spec.window, hook.config.match_grace, {}).as_params()
        params.update(
            fingerprint=cycle_store.mapping_fingerprint(hook.config.mapping),
            grace_seconds=cycle_store.grace_seconds(hook.config.match_grace),
        )
        with psycopg.connect(url) as conn:
            clean = {r[0] for r in conn.execute(cycle_store.clean_cycles_query(), params)}
        todo = [c.window for c in spec.window.iter_cycles() if c.start not in clean]
        times = []
        for cycle in todo:
            started = time.perf_counter()
            hook.store_cycle(psp, cycle)
            times.append(time.perf_counter() - started)
        label = f"{rate:.1%}".replace(".0%", "%")
        res.add(
            Row(
                rows,
                label,
                "match_transactions: classify + store one cycle",
                statistics.median(times) if times else None,
                None,
                f"{len(todo)} cycle(s) stored now, {len(clean)} already stored and clean"
                + (f", max {max(times) * 1000:.0f} ms" if times else ""),
            )
        )


def measure_size(args: argparse.Namespace, admin: str, rows: int, res: Results) -> None:
    ds = ensure_dataset(admin, rows, reseed=args.reseed)
    url = ds["url"]
    spec = dataset_spec(rows)
    window_start, window_end = spec.window.start.isoformat(), spec.window.end.isoformat()
    env = child_env(url)
    os.environ["AIRFLOW_CONN_BILLING_GATEWAY_DB"] = env["AIRFLOW_CONN_BILLING_GATEWAY_DB"]
    divergent = ds["seed_result"]["divergent"]
    store_cycles(url, rows, spec, res)
    cli = [sys.executable, "-m", "airflow_recon_provider.cli"]
    compare = rows in (args.compare_sizes or args.sizes)
    report_only = rows in (args.report_only_sizes or [])
    if rows not in (args.window_sizes or args.sizes) and not report_only:
        res.notes.append(f"- {rows:,} rows: full-window cases not run (`--window-sizes`).")
        measure_cycle_and_poll(args, url, rows, spec, res)
        return
    if report_only:
        res.notes.append(
            f"- {rows:,} rows: only the package report at 5% over the full window, for its time and worker "
            "RSS (`--report-only-sizes`); summary, scan and client-side tools not run at this size."
        )
    for psp, rate in PSP_RATES.items():
        if report_only and rate < 0.05:
            continue
        label = f"{rate:.1%}".replace(".0%", "%")
        expected = divergent[psp]["count"]
        common = ["--psp", psp, "--window-start", window_start, "--window-end", window_end]
        params = _window_params(psp, window_start, window_end)

        def child(argv: list[str]) -> tuple[float, float, list[str]]:
            if not (args.quick or args.no_warm):
                run_child(argv, env)  # warm
            runs = [run_child(argv, env) for _ in range(max(1, args.window_repeat or args.repeat))]
            runs.sort(key=lambda r: r[0])
            mid = runs[len(runs) // 2]
            return mid[0], max(r[1] for r in runs), mid[2]

        secs, rss, out = child([*cli, "report", *common, "--format", "jsonl"])
        ok = "ok" if int(out[0]) == expected else f"MISMATCH (expected {expected:,})"
        res.add(Row(rows, label, "package report (CLI, streamed)", secs, rss, f"{int(out[0]):,} keys {ok}"))
        secs, rss, out = child([*cli, "report", *common, "--format", "jsonl", "--no-cycle-store"])
        ok = "ok" if int(out[0]) == expected else f"MISMATCH (expected {expected:,})"
        res.add(
            Row(
                rows,
                label,
                "package report, live one-shot (no store)",
                secs,
                rss,
                f"{int(out[0]):,} keys {ok}",
            )
        )
        if report_only:
            continue
        if rows == min(args.sizes) and rate >= 0.05:
            measure_cli_fixed_cost(args, cli, env, psp, spec, rows, res)
        secs, rss, out = child([*cli, "summary", *common])
        got = json.loads(out[-1])["divergent_count"]
        ok = "ok" if got == expected else f"MISMATCH (expected {expected:,})"
        res.add(Row(rows, label, "package summary (CLI)", secs, rss, f"{got:,} keys {ok}"))
        secs, scanned = median_of(
            args.repeat, lambda p=params: bare_scan(url, p), warm=not (args.quick or args.no_warm)
        )
        res.add(Row(rows, label, "bare count(*) scan, both sides", secs, None, f"{scanned:,} rows"))
        if compare and (rate >= 0.05 or not (args.clients_main_rate_only or args.quick)):
            for client in args.clients:
                argv = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--client",
                    client,
                    "--url",
                    url,
                    "--psp",
                    psp,
                    "--start",
                    window_start,
                    "--end",
                    window_end,
                ]
                try:
                    runs = [run_child(argv, env) for _ in range(max(1, args.client_repeat))]
                except RuntimeError as exc:
                    res.add(Row(rows, label, f"{client} client-side", None, None, f"failed: {exc}"[:200]))
                    continue
                runs.sort(key=lambda r: r[0])
                mid = runs[len(runs) // 2]
                res.add(
                    Row(
                        rows,
                        label,
                        f"{client} client-side",
                        mid[0],
                        max(r[1] for r in runs),
                        f"{mid[2][-1]} keys",
                    )
                )
    measure_cycle_and_poll(args, url, rows, spec, res)


def measure_cli_fixed_cost(
    args: argparse.Namespace,
    cli: list[str],
    env: dict[str, str],
    psp: str,
    spec: SeedSpec,
    rows: int,
    res: Results,
) -> None:
    """``airflow-recon summary`` of a one-hour window before the data (no row in it): the
    CLI's fixed cost (interpreter, imports, connection, the queries' planning), median of
    ``--repeat`` (at least 3) child processes."""
    start = spec.start - timedelta(hours=6)
    argv = [
        *cli,
        "summary",
        "--psp",
        psp,
        "--window-start",
        start.isoformat(),
        "--window-end",
        (start + timedelta(hours=1)).isoformat(),
    ]
    runs = sorted(run_child(argv, env) for _ in range(max(3, args.repeat)))
    mid = runs[len(runs) // 2]
    got = json.loads(mid[2][-1])["gateway_count"]
    res.add(
        Row(
            rows,
            "-",
            "CLI fixed cost: summary of a near-empty window",
            mid[0],
            max(r[1] for r in runs),
            f"median of {len(runs)} processes, {got} gateway rows in the window",
        )
    )


def measure_cycle_and_poll(
    args: argparse.Namespace, url: str, rows: int, spec: SeedSpec, res: Results
) -> None:
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.reconciliation.window import Window
    from airflow_recon_provider.triggers.divergence import DivergenceTrigger

    middle = spec.start + timedelta(hours=spec.hours // 2)
    hours = [Window(middle + timedelta(hours=k), middle + timedelta(hours=k + 1)) for k in range(5)]
    for case, hook in (
        ("hourly cycle (hook summary from the stored cycle, one PSP, 1 h)", BillingGatewayHook()),
        (
            "live hourly cycle (hook summary, no store), for comparison",
            BillingGatewayHook(use_cycle_store=False),
        ),
    ):
        for psp in PSP_RATES:
            hook.summary(psp, hours[0])  # warm
            times = []
            for w in hours * max(1, args.repeat):
                started = time.perf_counter()
                hook.summary(psp, w)
                times.append(time.perf_counter() - started)
            label = f"{PSP_RATES[psp]:.1%}".replace(".0%", "%")
            res.add(
                Row(
                    rows,
                    label,
                    case,
                    statistics.median(times),
                    None,
                    f"median of {len(times)} (5 hours), max {max(times) * 1000:.0f} ms",
                )
            )
    trigger = DivergenceTrigger(psps=list(PSP_RATES) * 5, lookback_cycles=3)
    now = middle + timedelta(minutes=5)
    secs, _ = median_of(
        args.repeat, lambda: asyncio.run(trigger.poll_once(set(), now=now)), warm=not args.quick
    )
    res.add(Row(rows, "both", "sensor poll, 10 PSP checks (3 h lookback)", secs, None, "poll_once wall time"))


def measure_startup(args: argparse.Namespace, res: Results) -> None:
    """Parse time of every DAG file (DagBag's own per-file duration, Airflow imported, as
    in the DAG processor) and the import time of the package on top of the Task SDK."""
    env = child_env(os.environ.get("AIRFLOW_CONN_BILLING_GATEWAY_DB", "postgresql://postgres@127.0.0.1/x"))
    parse = (
        "import sys, json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(dag_folder=sys.argv[1])\n"
        "print(json.dumps({'errors': list(bag.import_errors), 'stats': "
        "[(s.file, s.duration.total_seconds() if hasattr(s.duration, 'total_seconds') else s.duration)"
        " for s in bag.dagbag_stats]}))\n"
    )
    for dag_file in sorted((ROOT / "dags").glob("*.py")):
        durations = []
        for _ in range(max(1, args.repeat)):
            _, _, out = run_child([sys.executable, "-c", parse, str(dag_file)], env)
            info = json.loads(out[-1])
            if info["errors"]:
                durations = []
                break
            durations.append(sum(d for _, d in info["stats"]))
        if durations:
            res.add(Row(0, "-", f"DAG parse: dags/{dag_file.name}", statistics.median(durations)))
        else:
            res.add(Row(0, "-", f"DAG parse: dags/{dag_file.name}", None, None, "import error"))
    imp = (
        "import time\n"
        "import airflow.sdk  # a task start has this already\n"
        "from airflow.sdk import BaseOperator\n"
        "t = time.perf_counter()\n"
        "import airflow_recon_provider.operators.reconciliation, airflow_recon_provider.sensors.divergence\n"
        "import airflow_recon_provider.hooks.billing_gateway\n"
        "print(time.perf_counter() - t)\n"
    )
    times = [float(run_child([sys.executable, "-c", imp], env)[2][-1]) for _ in range(max(1, args.repeat))]
    res.add(
        Row(
            0,
            "-",
            "package import on top of the Task SDK",
            statistics.median(times),
            None,
            "operators.reconciliation + sensors.divergence + hooks.billing_gateway",
        )
    )


# -- the run, the table and docs/benchmarks.md ----------------------------------------------


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "not installed"


def machine_lines(admin: str, engine: str) -> list[str]:
    import psutil

    with psycopg.connect(admin, autocommit=True) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
        settings = {
            name: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]
            for name in ("shared_buffers", "max_parallel_workers_per_gather", "work_mem")
        }
    cpu = "unknown CPU"
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()
    return [
        f"- Machine: {os.cpu_count()} vCPU ({cpu}), {psutil.virtual_memory().total / 1024**3:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}; load average at the start {load[0]:.1f}",
        f"- Server: {engine} {pg} (shared_buffers {settings.get('shared_buffers')}, "
        f"max_parallel_workers_per_gather {settings.get('max_parallel_workers_per_gather')}, server "
        f"work_mem {settings.get('work_mem')}; the package sets its own per statement)",
        f"- Python {platform.python_version()}, psycopg {_version('psycopg')}, apache-airflow "
        f"{_version('apache-airflow')}, polars {_version('polars')}, pandas {_version('pandas')}, "
        f"datacompy {_version('datacompy')}",
    ]


def _fmt_s(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def table(res: Results) -> list[str]:
    out = [
        "| gateway rows per PSP | divergence | case | median time | peak RSS | detail |",
        "|---:|---:|---|---:|---:|---|",
    ]
    for r in res.rows:
        rows = f"{r.rows:,}" if r.rows else "-"
        rss = f"{r.rss_mib:.0f} MiB" if r.rss_mib is not None else "-"
        out.append(f"| {rows} | {r.rate} | {r.case} | {_fmt_s(r.seconds)} | {rss} | {r.detail} |")
    return out


def goal_lines(args: argparse.Namespace, res: Results) -> list[str]:
    """Every goal of issue 7 with the measured figure or ratio."""
    lines = []
    big = 5_000_000 if 5_000_000 in args.sizes else max(args.sizes)
    rep = res.get(big, "5%", "package report (CLI, streamed)")
    scan = res.get(big, "5%", "bare count(*) scan, both sides")
    for client in args.clients:
        c = res.get(big, "5%", f"{client} client-side")
        if rep and rep.seconds and c and c.seconds:
            ratio = c.seconds / rep.seconds
            verdict = "met" if ratio >= 5 else "MISSED"
            lines.append(
                f"- Report at {big:,} rows, 5%: {client} client-side time / report time = {ratio:.2f} "
                f"({_fmt_s(rep.seconds)} vs {_fmt_s(c.seconds)}); goal 5x: **{verdict}**"
            )
        else:
            lines.append(f"- Report vs {client} at {big:,} rows: not measured in this run")
    if rep and rep.seconds and scan and scan.seconds:
        ratio = rep.seconds / scan.seconds
        verdict = "met" if ratio <= 3 else "MISSED"
        lines.append(
            f"- Report at {big:,} rows, 5%: {ratio:.2f}x the bare count(*) scan "
            f"({_fmt_s(rep.seconds)} vs {_fmt_s(scan.seconds)}); goal within 3x: **{verdict}**"
        )
    rss = [r for r in res.rows if r.case.startswith("package") and r.rss_mib is not None]
    if rss:
        worst = max(rss, key=lambda r: r.rss_mib or 0)
        verdict = "met" if (worst.rss_mib or 0) < 250 else "MISSED"
        sizes = ", ".join(f"{n:,}" for n in sorted({r.rows for r in rss}))
        lines.append(
            f"- Worker (CLI) peak RSS at {sizes} rows: at most {worst.rss_mib:.0f} MiB "
            f"({worst.case}, {worst.rows:,} rows, {worst.rate}); goal < 250 MiB: **{verdict}**"
        )
    cycles = [r for r in res.rows if r.case.startswith("hourly cycle") and r.seconds is not None]
    if cycles:
        worst = max(cycles, key=lambda r: r.seconds or 0)
        per_size = ", ".join(
            f"{n:,}: {max((r.seconds or 0) for r in cycles if r.rows == n) * 1000:.0f} ms"
            for n in sorted({r.rows for r in cycles})
        )
        verdict = "met" if (worst.seconds or 0) < 0.05 else "MISSED"
        sizes = sorted({r.rows for r in cycles})
        first = max((r.seconds or 0) for r in cycles if r.rows == sizes[0])
        last = max((r.seconds or 0) for r in cycles if r.rows == sizes[-1])
        flat = f"; largest / smallest table: {last / first:.2f}x" if len(sizes) > 1 and first else ""
        lines.append(
            f"- Hourly cycle (slower PSP per size) {per_size}{flat}; goal < 50 ms and flat: **{verdict}**"
        )
    polls = [r for r in res.rows if r.case.startswith("sensor poll") and r.seconds is not None]
    if polls:
        worst = max(polls, key=lambda r: r.seconds or 0)
        verdict = "met" if (worst.seconds or 0) < 0.5 else "MISSED"
        lines.append(
            f"- Sensor poll of 10 PSP checks: at most {_fmt_s(worst.seconds)} ({worst.rows:,} rows); "
            f"goal < 0.5 s: **{verdict}**; no worker slot is held between polls (the sensor defers to "
            "DivergenceTrigger in the triggerer)"
        )
    parses = [r for r in res.rows if r.case.startswith("DAG parse")]
    if parses:
        worst = max(parses, key=lambda r: r.seconds if r.seconds is not None else 99)
        verdict = "met" if all(r.seconds is not None and r.seconds < 0.5 for r in parses) else "MISSED"
        lines.append(
            f"- DAG files: slowest parse {_fmt_s(worst.seconds)} ({worst.case[11:]}); "
            f"goal < 0.5 s: **{verdict}**"
        )
    imp = res.get(0, "-", "package import on top of the Task SDK")
    if imp and imp.seconds is not None:
        verdict = "met" if imp.seconds < 0.3 else "MISSED"
        lines.append(
            f"- Package import added to a task start: {_fmt_s(imp.seconds)}; goal < 0.3 s: **{verdict}**"
        )
    return lines


def _ratio_goal(label: str, num: Row | None, den: Row | None, goal: float, *, at_least: bool) -> str:
    """One goal line: ``num / den`` against ``goal`` (``at_least``: ratio >= goal)."""
    if not (num and num.seconds and den and den.seconds):
        return f"- {label}: not measured in this run"
    ratio = num.seconds / den.seconds
    met = ratio >= goal if at_least else ratio <= goal
    sign = ">=" if at_least else "<="
    return (
        f"- {label}: {ratio:.2f}x ({_fmt_s(num.seconds)} vs {_fmt_s(den.seconds)}); goal {sign} {goal:g}x: "
        f"**{'met' if met else 'MISSED'}**"
    )


def _time_goal(label: str, row: Row | None, goal: float) -> str:
    if not (row and row.seconds is not None):
        return f"- {label}: not measured in this run"
    verdict = "met" if row.seconds <= goal else "MISSED"
    return (
        f"- {label}: {_fmt_s(row.seconds)} ({row.rows:,} rows per PSP); goal <= {_fmt_s(goal)}: **{verdict}**"
    )


def goal_lines_issue18(args: argparse.Namespace, res: Results) -> list[str]:
    """Every goal of issue 18 (second round), ratios from rows measured side by side in this
    run: polars client-side time / package time, package time / bare scan time."""
    lines = []
    for rows, stored_goal, live_goal in ((5_000_000, 6, 1), (1_000_000, 3, 1.5)):
        polars = res.get(rows, "5%", "polars client-side")
        lines.append(
            _ratio_goal(
                f"Report from stored cycles, {rows:,} rows per PSP, 5%: polars time / report time",
                polars,
                res.get(rows, "5%", "package report (CLI, streamed)"),
                stored_goal,
                at_least=True,
            )
        )
        lines.append(
            _ratio_goal(
                f"Live one-shot report (`--no-cycle-store`), {rows:,} rows per PSP, 5%: "
                "polars time / report time",
                polars,
                res.get(rows, "5%", "package report, live one-shot (no store)"),
                live_goal,
                at_least=True,
            )
        )
    lines.append(
        _ratio_goal(
            "Report from stored cycles, 1,000,000 rows per PSP, 5%: "
            "report time / bare count(*) scan of both sides",
            res.get(1_000_000, "5%", "package report (CLI, streamed)"),
            res.get(1_000_000, "5%", "bare count(*) scan, both sides"),
            3,
            at_least=False,
        )
    )
    live_cycle = [r for r in res.rows if r.case.startswith("live hourly cycle") and r.rows == 5_000_000]
    lines.append(
        _time_goal(
            "Live hourly cycle (hook summary, no store) on the 5,000,000-row table, slower PSP",
            max(live_cycle, key=lambda r: r.seconds or 0) if live_cycle else None,
            0.25,
        )
    )
    lines.append(
        _time_goal(
            "`airflow-recon summary` of a near-empty window (the CLI's fixed cost)",
            next((r for r in res.rows if r.case.startswith("CLI fixed cost")), None),
            0.6,
        )
    )
    stores = [r for r in res.rows if r.case.startswith("match_transactions") and r.seconds is not None]
    if stores:
        largest = max(r.rows for r in stores)
        worst = max((r for r in stores if r.rows == largest), key=lambda r: r.seconds or 0)
        line = _time_goal("`match_transactions`: classify + store one cycle, slower PSP", worst, 1.0)
        if largest < 10_000_000:
            line += f" (the goal is set at 10,000,000 rows per PSP; this run's largest table is {largest:,})"
        lines.append(line)
    else:
        lines.append("- `match_transactions`: classify + store one cycle: not measured in this run")
    cycles = [r for r in res.rows if r.case.startswith("hourly cycle") and r.seconds is not None]
    polls = [r for r in res.rows if r.case.startswith("sensor poll") and r.seconds is not None]
    if cycles and polls:
        worst_cycle = max(cycles, key=lambda r: r.seconds or 0)
        worst_poll = max(polls, key=lambda r: r.seconds or 0)
        kept = (worst_cycle.seconds or 0) <= 0.05 and (worst_poll.seconds or 0) < 0.5
        lines.append(
            f"- First-round figures kept: hourly cycle from the store at most {_fmt_s(worst_cycle.seconds)} "
            f"(<= 50 ms), sensor poll of 10 PSPs at most {_fmt_s(worst_poll.seconds)} (< 0.5 s): "
            f"**{'met' if kept else 'MISSED'}**"
        )
    return lines


def write_doc(
    path: Path, args: argparse.Namespace, argv: list[str], header: list[str], res: Results, elapsed: float
) -> None:
    command = " ".join(["python", "benchmarks/run.py", *argv])
    text = [
        "# Benchmarks",
        "",
        "Written by `benchmarks/run.py` from one run (issue 18; the goals of issue 7 too). "
        "Measured figures only.",
        "",
        "## Command",
        "",
        "```bash",
        f".venv/bin/{command}",
        "```",
        "",
        f"Run on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {elapsed / 60:.0f} min.",
        "",
        *header,
        "",
        "## Data",
        "",
        f"The package's seed generator (`devtools/seed.py`, seed {SEED}), one database per size: "
        "PSP `stripe` at 5% divergence and PSP `adyen` at 0.1% (all seven kinds), N gateway "
        "transactions each (so the "
        "tables hold 2N gateway rows and about 2N statement lines), at a fixed hourly volume of "
        f"{ROWS_PER_HOUR:,} rows per PSP: "
        + ", ".join(f"{n:,} rows = {hours_for(n)} hours" for n in args.sizes)
        + ". The full-window cases cover all hours (plus the one-hour grace on each side).",
        "",
        "Cases: before anything is measured, every hourly cycle of both PSPs is classified and stored "
        "(`BillingGatewayHook.store_cycle`, what `match_transactions` does each hour; its time per cycle is "
        "the `match_transactions: classify + store one cycle` line), so the report, summary, hourly-cycle "
        "and sensor-poll cases measure the stored path: clean stored cycles reused, only keys that straddle "
        "a cycle edge (or changed since) classified live. `package report` is `airflow-recon report "
        "--format jsonl` over the whole window as a child "
        "process (wall time, peak RSS from `wait4`; output lines counted and checked against the seed's "
        "ground truth); `package report, live one-shot` is the same with `--no-cycle-store` (the whole "
        "window classified live, no stored cycle used: one statement per key part, on up to "
        "`live_connections` connections in one snapshot, 2 by default); `package summary` likewise from "
        "the store. "
        "Client-side baselines run in a child process: COPY both "
        "sides out as CSV, then group by key, full join and classify (polars, pandas) or compare "
        "(datacompy `PolarsCompare`). `bare count(*)` counts both sides' rows in the same window (with the "
        "intents join). The hourly cycle is `BillingGatewayHook.summary` of one PSP over one hour in the "
        "middle of the data (the sensor's and `match_transactions`' unit), from the stored cycle, median "
        "over five hours x repeat, with the live classification of the same hours as a separate line; "
        "the sensor poll is `DivergenceTrigger.poll_once` with 10 PSP checks (the two seeded PSPs five times "
        "each, 3-hour lookback, from the stored cycles), wall time including the connection. "
        f"Median of {args.repeat} (full-window package runs: {args.window_repeat or args.repeat}) "
        + (
            "without warm-up runs (data in the OS page cache from earlier runs)"
            if args.no_warm
            else "after one warm-up run"
        )
        + f" (client-side tools: median of {args.client_repeat}); peak RSS is the largest of the runs.",
        "",
        "## Goals of issue 18 (second round)",
        "",
        *goal_lines_issue18(args, res),
        "",
        "## Goals of issue 7 (first round)",
        "",
        *goal_lines(args, res),
        "",
        "## Results",
        "",
        *table(res),
        "",
    ]
    if res.notes:
        text += ["## Notes", "", *res.notes, ""]
    extra = ROOT / "benchmarks" / "levers.md"  # hand-written: levers tried, reasons for missed goals
    if extra.exists():
        text += [extra.read_text().rstrip(), ""]
    path.write_text("\n".join(text))


def run(args: argparse.Namespace) -> int:
    argv = sys.argv[1:]
    if args.quick:
        args.sizes, args.repeat, args.client_repeat = [20_000], 1, 1
    started = time.perf_counter()
    admin, server, engine = start_server(args)
    res = Results()
    try:
        header = machine_lines(admin, engine)
        print("\n".join(header), flush=True)
        print("  gateway rows  rate case                                         median time  peak RSS")
        measure_startup(args, res)
        for rows in args.sizes:
            measure_size(args, admin, rows, res)
    finally:
        if args.drop_datasets:
            with psycopg.connect(admin, autocommit=True) as conn:
                for rows in args.sizes:
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(f"recon_bench_{rows}")
                        )
                    )
        if server is not None and not args.keep_server:
            server.stop()
    elapsed = time.perf_counter() - started
    print()
    print("\n".join(table(res)))
    print()
    goals = goal_lines_issue18(args, res) + goal_lines(args, res)
    print("\n".join(goals))
    if args.output:
        write_doc(Path(args.output), args, argv, header, res, elapsed)
        print(f"wrote {args.output}")
    if args.quick:
        bad = [r for r in res.rows if "MISMATCH" in r.detail or "failed" in r.detail or r.seconds is None]
        return 1 if bad else 0
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000, 10_000_000])
    p.add_argument("--quick", action="store_true", help="20k rows, 1 repetition (smoke run)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--pg-url", default=None, help="admin URI of a server (default: embedded)")
    p.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "recon-bench-pg"))
    p.add_argument("--seed-only", action="store_true")
    p.add_argument("--reseed", action="store_true")
    p.add_argument("--keep-server", action="store_true", help="leave the embedded server running")
    p.add_argument("--output", default=None, help="write the markdown report there (docs/benchmarks.md)")
    p.add_argument(
        "--compare-sizes",
        type=int,
        nargs="*",
        default=None,
        help="sizes where the client-side tools run (default: all)",
    )
    p.add_argument(
        "--clients",
        nargs="*",
        default=[name for name in CLIENTS if importlib.util.find_spec(name) is not None],
        choices=list(CLIENTS),
        help="client-side tools to compare (default: those installed; `pip install -e '.[bench]'`)",
    )
    p.add_argument(
        "--window-sizes",
        type=int,
        nargs="*",
        default=None,
        help="sizes where the full-window cases run (default: all; the others get cycle and poll only)",
    )
    p.add_argument(
        "--report-only-sizes",
        type=int,
        nargs="*",
        default=None,
        help="sizes where, of the full-window cases, only the package report at 5%% runs",
    )
    p.add_argument(
        "--window-repeat",
        type=int,
        default=None,
        help="repetitions of the full-window child processes (default: --repeat)",
    )
    p.add_argument(
        "--no-warm", action="store_true", help="no unmeasured warm-up run of the full-window cases"
    )
    p.add_argument("--drop-datasets", action="store_true", help="drop the benchmark databases at the end")
    p.add_argument("--client-repeat", type=int, default=3)
    p.add_argument("--clients-main-rate-only", action="store_true", help="client-side tools at 5%% only")
    # child mode: one client-side baseline
    p.add_argument("--client", choices=list(CLIENTS), help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--psp", help=argparse.SUPPRESS)
    p.add_argument("--start", help=argparse.SUPPRESS)
    p.add_argument("--end", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.client:
        return main_client(args)
    if args.seed_only:
        return main_seed_only(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
