"""``airflow-recon``: the runbook's investigation queries and the demo from a terminal.

Connections come from Airflow's usual sources (``AIRFLOW_CONN_BILLING_GATEWAY_DB`` as a
URI or JSON, a secrets backend, the metadata DB), so the CLI and the DAGs see the same
databases. Bad input exits with status 2 and one clear line on stderr; nothing is
written. Output of ``report`` is streamed: memory does not grow with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow_recon_provider.names import BILLING_GATEWAY_CONN_ID, PAYMENTS_LEDGER_CONN_ID
from airflow_recon_provider.reconciliation.errors import (
    ConnectionMissingError,
    DependencyUnavailableError,
    ReconError,
)

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


class CliError(Exception):
    """A failure reported as one line on stderr with a given exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other bad input
        raise CliError(f"{self.prog}: {message}", EXIT_BAD_INPUT)


def _window_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--psp", required=True, help="PSP name as in payment_intents.provider")
    p.add_argument("--window-start", required=True, help="ISO 8601 with offset, e.g. 2026-11-20T10:00:00Z")
    p.add_argument("--window-end", required=True, help="ISO 8601 with offset; the window is [start, end)")
    p.add_argument("--kinds", default=None, help="comma-separated divergence kinds (default: all)")
    p.add_argument("--conn-id", default=BILLING_GATEWAY_CONN_ID, help="gateway database connection id")
    p.add_argument(
        "--no-cycle-store",
        action="store_true",
        help="classify the whole window live, ignoring the cycles stored by match_transactions",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="airflow-recon", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    report = sub.add_parser("report", help="divergent rows of a PSP and window, streamed")
    _window_args(report)
    report.add_argument("--format", choices=("jsonl", "csv", "table"), default="jsonl")

    summary = sub.add_parser("summary", help="summary figures of a PSP and window as one JSON object")
    _window_args(summary)
    summary.add_argument(
        "--table", action="store_true", help="also print a readable per-kind table on stderr"
    )

    migrate = sub.add_parser("migrate", help="create or upgrade the provider's recon schema")
    migrate.add_argument("--conn-id", default=BILLING_GATEWAY_CONN_ID)
    migrate.add_argument(
        "--with-runbook-tables",
        action="store_true",
        help="also create the runbook's tables (for test and demo databases only)",
    )
    migrate.add_argument(
        "--cycle-store",
        action="store_true",
        help="also enable the stored per-cycle classification: change triggers and two key indexes on "
        "the gateway's and statement tables (see benchmarks/levers.md; opt-in)",
    )

    fx = sub.add_parser(
        "fx-rates", help="FX rates of recon.fx_rates (units of the reporting currency per unit)"
    )
    fx_sub = fx.add_subparsers(dest="fx_command", required=True, parser_class=_Parser)
    fx_load = fx_sub.add_parser(
        "load",
        help="load a rates CSV (currency,rate,valid_from,source): all of it or, on any bad line, nothing",
        description=(
            "Header on line 1: currency,rate,valid_from,source. currency: ISO 4217 code with minor units; "
            "rate: positive decimal, units of the reporting currency per one unit; valid_from: ISO 8601 "
            "date-time with an offset, or YYYY-MM-DD meaning 00:00 UTC; source: where the rate comes from. "
            "A bad line, or a (currency, valid_from) already in the file or in recon.fx_rates, refuses the "
            "whole file, naming the line."
        ),
    )
    fx_load.add_argument("file", help="the rates CSV file")
    fx_load.add_argument("--conn-id", default=BILLING_GATEWAY_CONN_ID, help="gateway database connection id")

    seed = sub.add_parser("seed", help="load deterministic synthetic data (test and demo databases only)")
    seed.add_argument("--seed", type=int, default=42)
    seed.add_argument("--psps", default="stripe,adyen,pagseguro", help="comma-separated PSP names")
    seed.add_argument("--rows", type=int, default=2000, help="gateway transactions per PSP")
    seed.add_argument(
        "--rate",
        action="append",
        default=[],
        metavar="PSP=FRACTION",
        help="divergent fraction of a PSP's keys (default: first PSP 0.05, others 0)",
    )
    seed.add_argument("--start", default="2026-11-20T00:00:00Z", help="first hour of data (ISO, with offset)")
    seed.add_argument("--hours", type=int, default=24)
    seed.add_argument("--conn-id", default=BILLING_GATEWAY_CONN_ID)
    seed.add_argument("--ledger-conn-id", default=PAYMENTS_LEDGER_CONN_ID)
    seed.add_argument("--no-truncate", action="store_true", help="append instead of replacing data")
    seed.add_argument(
        "--yes-i-know-this-truncates",
        action="store_true",
        help="required: seeding empties the runbook tables of the target database",
    )

    demo = sub.add_parser(
        "demo",
        help="the runbook end to end: embedded PostgreSQL, demo stand-ins, the package's DAGs",
        description=(
            "--headless (the default): the divergence watch detects a seeded divergence and "
            "billing_gateway_remediation runs it to closure in this process, then a report. "
            "--ui: Airflow's api-server, scheduler, dag-processor and triggerer (what airflow "
            "standalone runs) with the package's DAGs and dashboard on the same data; Ctrl-C stops them."
        ),
        epilog=(
            "The demo's embedded PostgreSQL keeps running after the demo ends (its data is reused by "
            "the next demo) unless --stop is given; --stop-postgres stops it later. "
            "./scripts/demo.sh shows this help before it installs anything."
        ),
    )
    mode = demo.add_mutually_exclusive_group()
    mode.add_argument(
        "--headless", dest="mode", action="store_const", const="headless", help="run and report (default)"
    )
    mode.add_argument("--ui", dest="mode", action="store_const", const="ui", help="serve the Airflow UI")
    mode.add_argument(
        "--stop-postgres",
        dest="mode",
        action="store_const",
        const="stop-postgres",
        help="stop the PostgreSQL an earlier demo left running (its data stays in --data-dir) and exit",
    )
    demo.set_defaults(mode="headless")
    demo.add_argument("--data-dir", default=os.environ.get("RECON_DEMO_DIR", ".recon-demo"))
    demo.add_argument("--rows", type=int, default=1200, help="gateway transactions per PSP")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--port", type=int, default=8080, help="--ui: the Airflow API server's port")
    demo.add_argument("--stop", action="store_true", help="stop the demo's PostgreSQL when done")
    return parser


# -- commands ----------------------------------------------------------------------------


def _window_and_kinds(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from airflow_recon_provider.reconciliation import ReconConfig, Window, parse_kinds

    config = ReconConfig.load()
    window = Window.parse(args.window_start, args.window_end, max_span=config.max_window)
    return config, window, parse_kinds(args.kinds)


def _gateway_reader(args: argparse.Namespace, config: Any) -> Any:
    """The gateway reader of ``report`` and ``summary``: straight on libpq when the connection
    is an ``AIRFLOW_CONN_*`` variable that nothing overrides (no Airflow import, see
    hooks/env_connections.py), else :class:`BillingGatewayHook` through Airflow's lookup."""
    from airflow_recon_provider.hooks.env_connections import postgres_connect_kwargs

    kwargs = postgres_connect_kwargs(args.conn_id)
    if kwargs is not None:
        from airflow_recon_provider.hooks.gateway_reader import DirectGatewayReader

        return DirectGatewayReader(
            conn_id=args.conn_id,
            connect_kwargs=kwargs,
            config=config,
            use_cycle_store=not args.no_cycle_store,
        )
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook

    return BillingGatewayHook(
        billing_gateway_conn_id=args.conn_id, config=config, use_cycle_store=not args.no_cycle_store
    )


def cmd_report(args: argparse.Namespace) -> int:
    from airflow_recon_provider.reconciliation.report import render_rows

    config, window, kinds = _window_and_kinds(args)
    hook = _gateway_reader(args, config)
    hook.resolve_psp(args.psp)  # fail before any output is written
    if args.format == "table":
        render_rows(hook.iter_divergences(args.psp, window, kinds), sys.stdout, args.format)
    else:
        # JSON lines and CSV are written by the server and copied through as bytes
        sys.stdout.flush()
        hook.write_report(args.psp, window, args.format, sys.stdout.buffer, kinds=kinds)
        sys.stdout.buffer.flush()
    sys.stdout.flush()
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from airflow_recon_provider.reconciliation.report import summary_table

    config, window, kinds = _window_and_kinds(args)
    hook = _gateway_reader(args, config)
    summary = hook.summary(args.psp, window, kinds=kinds)
    print(json.dumps(summary.as_dict(), ensure_ascii=False))
    if args.table:
        print(summary_table(summary), file=sys.stderr)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.schema import applied_versions, create_runbook_tables, migrate
    from airflow_recon_provider.schema.migrations import enable_cycle_store

    hook = BillingGatewayHook(billing_gateway_conn_id=args.conn_id)
    with hook.connect(autocommit=True) as conn:
        if args.with_runbook_tables:
            create_runbook_tables(conn)
        applied = migrate(conn)
        store = None
        if args.cycle_store:
            store = "installed now" if enable_cycle_store(conn, hook.config.mapping) else "already installed"
        versions = applied_versions(conn)
    print(
        json.dumps(
            {
                "applied_now": applied,
                "schema_versions": versions,
                "runbook_tables": args.with_runbook_tables,
                "cycle_store": store,
            }
        )
    )
    return 0


def cmd_fx_rates(args: argparse.Namespace) -> int:
    from airflow_recon_provider.hooks.fx_rates import FxRatesHook
    from airflow_recon_provider.reconciliation import ReconConfig
    from airflow_recon_provider.reconciliation.fx import FxTableMissingError, parse_rates_csv

    config = ReconConfig.load()
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror or exc}", EXIT_BAD_INPUT) from None
    rates = parse_rates_csv(data, name=args.file, reporting_currency=config.reporting_currency)
    hook = FxRatesHook(billing_gateway_conn_id=args.conn_id, config=config)
    try:
        counts = hook.load(rates)
    except FxTableMissingError as exc:
        raise CliError(str(exc), EXIT_FAILURE) from None
    print(
        json.dumps(
            {
                "file": args.file,
                "reporting_currency": config.reporting_currency,
                "loaded": sum(counts.values()),
                "by_currency": counts,
            }
        )
    )
    return 0


def _parse_rates(items: list[str], psps: tuple[str, ...]) -> dict[str, float] | None:
    if not items:
        return None
    rates: dict[str, float] = {}
    for item in items:
        psp, sep, value = item.partition("=")
        if not sep or psp not in psps:
            raise CliError(
                f"--rate {item!r} must be PSP=FRACTION for one of {', '.join(psps)}", EXIT_BAD_INPUT
            )
        try:
            rates[psp] = float(value)  # a fraction of keys, not an amount
        except ValueError:
            raise CliError(f"--rate {item!r}: {value!r} is not a number", EXIT_BAD_INPUT) from None
    return {psp: rates.get(psp, 0.0) for psp in psps}


def _seed_spec(args: argparse.Namespace) -> Any:
    from airflow_recon_provider.devtools.seed import SeedSpec
    from airflow_recon_provider.reconciliation import check_psp_name, parse_timestamp

    psps = tuple(p.strip() for p in args.psps.split(",") if p.strip())
    for psp in psps:
        check_psp_name(psp)
    return SeedSpec(
        seed=args.seed,
        psps=psps,
        rows_per_psp=args.rows,
        divergence_rate=_parse_rates(args.rate, psps),
        start=parse_timestamp(args.start, name="--start"),
        hours=args.hours,
    )


def cmd_seed(args: argparse.Namespace) -> int:
    from airflow_recon_provider.devtools.seed import seed_database
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.hooks.payments_ledger import PaymentsLedgerHook

    spec = _seed_spec(args)
    if not args.no_truncate and not args.yes_i_know_this_truncates:
        raise CliError(
            "seed empties the runbook tables of the target database; "
            "pass --yes-i-know-this-truncates (or --no-truncate to append)",
            EXIT_BAD_INPUT,
        )
    gateway = BillingGatewayHook(billing_gateway_conn_id=args.conn_id)
    ledger = PaymentsLedgerHook(payments_ledger_conn_id=args.ledger_conn_id)
    with gateway.connect() as gconn, ledger.connect() as lconn:
        result = seed_database(gconn, lconn, spec, truncate=not args.no_truncate, progress=_progress)
    print(json.dumps(result.as_dict()))
    return 0


def _progress(stage: str, done: int, total: int) -> None:
    print(f"  {stage}: {done:,}/{total:,}", file=sys.stderr)


def cmd_demo(args: argparse.Namespace) -> int:
    from airflow_recon_provider.devtools.demo import run_demo

    return run_demo(
        data_dir=args.data_dir,
        rows_per_psp=args.rows,
        seed=args.seed,
        stop=args.stop,
        mode=args.mode,
        port=args.port,
    )


COMMANDS = {
    "report": cmd_report,
    "summary": cmd_summary,
    "migrate": cmd_migrate,
    "fx-rates": cmd_fx_rates,
    "seed": cmd_seed,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    except (ConnectionMissingError, DependencyUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (ReconError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:
        import psycopg

        if isinstance(exc, psycopg.Error):
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"error: database error: {first}", file=sys.stderr)
            return EXIT_FAILURE
        raise
    except BrokenPipeError:  # `airflow-recon report ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
