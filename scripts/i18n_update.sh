#!/usr/bin/env bash
# Bring the translation catalogs in line with the marked messages (docs/i18n.md):
# extract with babel.cfg into a temporary template (none is committed), add the new messages
# to each catalog with an empty translation, drop the ones no longer in the source, and list
# what is left to translate. Then edit the msgstr lines and run tests/unit/test_i18n.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYBABEL=${PYBABEL:-.venv/bin/pybabel}
pot=$(mktemp --suffix=.pot)
log=$(mktemp)
trap 'rm -f "$pot" "$log"' EXIT
# the extraction's file-by-file chatter only when it fails
"$PYBABEL" extract -F babel.cfg --no-location --sort-output -o "$pot" \
    --project=airflow-recon-provider --version=0.1.0 . >"$log" 2>&1 || { cat "$log"; exit 1; }
"$PYBABEL" update -i "$pot" -d airflow_recon_provider/locale -D messages \
    --no-fuzzy-matching --ignore-obsolete --no-wrap
# dates in the header would make every run a merge conflict between branches: keep them fixed
sed -i -E 's/^"(POT-Creation-Date|PO-Revision-Date): .*"$/"\1: 2026-12-07 00:00+0000\\n"/' \
    airflow_recon_provider/locale/*/LC_MESSAGES/messages.po
.venv/bin/python - <<'PY'
from airflow_recon_provider.reconciliation.i18n import LANGUAGES, read_catalog

for language in (lang for lang in LANGUAGES if lang != "en"):
    todo = [m.id for m in read_catalog(language) if m.id and (not m.string or not all(m.string) or m.fuzzy)]
    print(f"{language}: {len(todo)} message(s) to translate")
    for message in todo:
        print(f"  {message!r}")
PY
