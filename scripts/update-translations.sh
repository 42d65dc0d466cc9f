#!/usr/bin/env bash
# Extracts the translatable texts (web/translations/babel.cfg) and merges them into every catalog.
set -euo pipefail
cd "$(dirname "$0")/.."
PYBABEL="${PYBABEL:-.venv/bin/pybabel}"
# babel.cfg's own extractor (web/translations/toml_extract.py) is imported from this checkout
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
pot="$(mktemp --suffix=.pot)"
trap 'rm -f "$pot"' EXIT
"$PYBABEL" extract -F web/translations/babel.cfg -k lazy_gettext -k N_ -k t --no-location --sort-output -o "$pot" .
for po in web/translations/*/LC_MESSAGES/messages.po; do
  lang="$(basename "$(dirname "$(dirname "$po")")")"
  "$PYBABEL" update -i "$pot" -d web/translations -l "$lang" --no-fuzzy-matching --ignore-obsolete --width 120
done
