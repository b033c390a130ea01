#!/usr/bin/env bash
# The README's demo command: creates .venv, installs the package, starts an embedded
# PostgreSQL, seeds a divergence scenario and prints what the runbook's investigation finds.
# Extra arguments go to `airflow-recon demo` (see --help).
source "$(dirname "$0")/_venv.sh"
ensure_venv demo
exec .venv/bin/airflow-recon demo "$@"
