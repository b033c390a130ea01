"""``./scripts/demo.sh --help`` answers before installing anything, and the demo's goodbye
names what it leaves running and how to stop it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_help_needs_no_install(tmp_path):
    """A fresh checkout (no .venv): --help prints the demo's options and creates nothing."""
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "scripts", checkout / "scripts")
    shutil.copytree(
        ROOT / "airflow_recon_provider",
        checkout / "airflow_recon_provider",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHON": sys.executable}
    answer = subprocess.run(
        ["bash", str(checkout / "scripts" / "demo.sh"), "--ui", "--help"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.startswith("usage: airflow-recon demo")
    assert "--stop-postgres" in answer.stdout and "before it installs anything" in answer.stdout
    assert "installing" not in answer.stderr and "creating .venv" not in answer.stderr
    assert not (checkout / ".venv").exists()


def test_the_goodbye_says_what_still_runs_and_how_to_stop_it(tmp_path):
    from airflow_recon_provider.devtools.demo import postgres_still_running

    line = postgres_still_running(tmp_path, 54321)
    assert line.startswith("Still running: the demo's PostgreSQL on 127.0.0.1:54321")
    assert f"./scripts/demo.sh --stop-postgres --data-dir {tmp_path}" in line


def test_stop_postgres_stops_what_an_earlier_demo_left_running(tmp_path):
    """``--stop-postgres`` on a cluster another process started: stopped, data kept; again:
    nothing to stop."""
    from airflow_recon_provider.devtools.demo import make_console, stop_demo_postgres
    from airflow_recon_provider.devtools.embedded_postgres import EmbeddedPostgres

    EmbeddedPostgres(tmp_path / "postgres").start()
    left = EmbeddedPostgres(tmp_path / "postgres")  # a new process knows only the folder
    assert left.running_port() is not None
    console = make_console()
    with console.capture() as said:
        assert stop_demo_postgres(tmp_path, console) == 0
    assert "Stopped the demo's PostgreSQL" in said.get()
    assert left.running_port() is None and (tmp_path / "postgres" / "pgdata" / "PG_VERSION").exists()
    with console.capture() as said:
        assert stop_demo_postgres(tmp_path, console) == 0
    assert "nothing to stop" in said.get()
