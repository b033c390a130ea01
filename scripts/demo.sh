#!/usr/bin/env bash
# The README's demo command: creates .venv, installs the package, starts an embedded
# PostgreSQL and the demo stand-ins, seeds a divergence, then either runs the whole runbook
# in-process and prints a report (--headless, the default) or serves it in the Airflow UI
# (--ui; Ctrl-C stops it). Extra arguments go to `airflow-recon demo` (see --help).
source "$(dirname "$0")/_venv.sh"
for arg in "$@"; do
  case "$arg" in
    -h|--help)
      # the help needs nothing installed: the command line parser is plain Python
      PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$(pick_python)" -m airflow_recon_provider.cli demo --help
      ;;
  esac
done
ensure_venv demo
exec .venv/bin/airflow-recon demo "$@"
