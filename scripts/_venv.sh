# Sourced by scripts/demo.sh and scripts/test.sh: create .venv with Python >= 3.11 if
# missing and install the package with the given extra. Only Python 3.11 is needed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
  return 1
}
ensure_venv() {
  local extra=$1
  local stamp=".venv/.installed-$extra"
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $(pick_python)" >&2
    "$(pick_python)" -m venv .venv
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    echo "==> installing airflow-recon-provider[$extra] into .venv (first run takes a minute or two)" >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >&2
    # constraints.txt: the known-good versions (no re-resolution of the whole tree)
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[$extra]" >&2
    touch "$stamp"
  fi
}
