"""Browser tests: the README's ``demo --ui`` command started as a user starts it (a child
process with its own Airflow home, metadata database and demo stand-ins), driven with
Debian's Chromium through Playwright (``executable_path=/usr/bin/chromium``; nothing is
downloaded). ``scripts/ensure_chromium.sh`` (run by ``scripts/test.sh``) installs Chromium;
without it, or without Playwright, these tests skip with the reason."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # browser_support is imported by name (conftest modules are not)
    sys.path.insert(0, str(HERE))

from browser_support import CHROMIUM, RunningUi  # noqa: E402

STARTUP_TIMEOUT = 420


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# package scope: one demo for this folder's modules (its start takes minutes); Airflow,
# Chromium and Playwright's event loop (the sync API keeps one running in this thread) end
# with this folder's tests, not at the end of the whole session, so the tests after them run
# with no running loop and no Airflow scheduler competing for the CPU
@pytest.fixture(scope="package")
def ui():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (scripts/ensure_chromium.sh installs it)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    # not under pytest's basetemp: another pytest session resets its permissions, and the
    # embedded PostgreSQL runs as its own system user when the tests run as root
    data_dir = Path(tempfile.mkdtemp(prefix="recon-ui-demo-"))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RECON_"))}
    log = (data_dir / "demo-ui.out").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_recon_provider.cli", "demo", "--ui", "--stop",
         "--data-dir", str(data_dir), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        text = ""
        while "Airflow is ready" not in text:
            assert process.poll() is None, f"demo --ui exited:\n{(data_dir / 'demo-ui.out').read_text()}"
            assert time.monotonic() < deadline, f"demo --ui not ready:\n{text[-3000:]}"
            time.sleep(2)
            text = (data_dir / "demo-ui.out").read_text()
        window = re.search(r"window start (\S+), window end (\S+) ", text)
        pg_port = (data_dir / "postgres" / "pgdata" / "postmaster.pid").read_text().splitlines()[3]
        yield RunningUi(
            url=f"http://127.0.0.1:{port}",
            data_dir=data_dir,
            window_start=window.group(1),
            window_end=window.group(2),
            gateway_uri=f"postgresql://postgres@127.0.0.1:{pg_port}/billing_gateway",
            airflow_uri=f"postgresql://postgres@127.0.0.1:{pg_port}/airflow",
        )
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C: the demo stops everything it started
        try:
            process.wait(90)
            demo_exit: int | str = process.returncode
        except subprocess.TimeoutExpired:
            process.kill()
            demo_exit = "did not exit within 90 s of Ctrl-C: killed"
        log.close()
        from airflow_recon_provider.devtools.demo_ui import _processes_with_env

        home = str(data_dir / "airflow-home")
        # the demo has exited; its components' own children (API workers, the executor's
        # task processes) may still be finishing their shutdown: give them a bounded while
        deadline = time.monotonic() + 60
        left = _processes_with_env("AIRFLOW_HOME", home)
        while left and time.monotonic() < deadline:
            time.sleep(1)
            left = _processes_with_env("AIRFLOW_HOME", home)
        described = {pid: _command_of(pid) for pid in left}
        for pid in left:  # never leave them to the rest of the session
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        output = (data_dir / "demo-ui.out").read_text(errors="replace")[-2000:]
        shutil.rmtree(data_dir, ignore_errors=True)
        # Ctrl-C must stop everything the demo started (README): nothing may outlive it
        assert not left, f"demo --ui left processes running after Ctrl-C (exit {demo_exit}): {described}"
        assert demo_exit == 0, f"demo --ui after Ctrl-C: exit {demo_exit}\n{output}"


def _command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


@pytest.fixture(scope="package")
def browser(ui):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()
