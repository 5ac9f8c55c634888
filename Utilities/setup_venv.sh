#!/usr/bin/env bash
# Creates .venv with the pinned dependencies, or reuses it when the pins are unchanged.
# The stamp is a digest of the files that define the environment, so a fresh clone (new file
# times) still reuses a matching .venv and any edit to a pin rebuilds it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
stamp="$venv/.samzeroshot-env.sha256"
want=$(cat requirements.txt pyproject.toml Utilities/setup_venv.sh | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/samzeroshot" ]; then
  echo "setup: .venv is up to date"
  exit 0
fi

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python=$candidate; break
    fi
  done
fi
[ -n "$python" ] || { echo "setup: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

start=$(date +%s)
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
rm -f "$stamp"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
# Editable, so that .venv/bin/samzeroshot runs the checkout's library.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
echo "setup: .venv ready in $(( $(date +%s) - start )) s ($(du -sh "$venv" | cut -f1))"
