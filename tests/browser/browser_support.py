"""Helpers of the browser tests (importable by name; conftest modules are not)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = os.environ.get("RECON_CHROMIUM", "/usr/bin/chromium")
#: the README's screenshots are refreshed only on request (RECON_UPDATE_SCREENSHOTS=1), so that
#: a test run leaves the checkout clean; otherwise they go to a temporary folder
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("RECON_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "recon-browser-screenshots"
)


@dataclass(frozen=True)
class RunningUi:
    url: str
    data_dir: Path
    window_start: str
    window_end: str
    gateway_uri: str
    airflow_uri: str


def login(browser, ui: RunningUi, user: str, password: str, *, timezone_id: str | None = None):
    """A new browser context logged in as ``user``; ``timezone_id`` is the browser's (and so,
    by default, the Airflow UI's) time zone, e.g. ``America/Sao_Paulo``."""
    options = {"timezone_id": timezone_id} if timezone_id else {}
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, **options)
    page = context.new_page()
    page.goto(f"{ui.url}/auth/login")
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    return page


def shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
