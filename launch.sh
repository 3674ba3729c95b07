#!/usr/bin/env bash
# Z-Image-Turbo WebUI: set-up, serving and tests in one place.
#
#   ./launch.sh [--setting value ...]   set up if needed, then serve the WebUI (port 7860)
#   ./launch.sh test [pytest args]      set up if needed, then run the test suite
#   ./launch.sh setup                   only create .venv and install requirements.txt
#
# Set-up creates a virtual environment in .venv and installs the pinned requirements; it
# runs again only when requirements.txt changes. PYTHON picks the interpreter (3.10+).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv

setup() {
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "launch.sh: needs Python 3.10 or newer as \$PYTHON (now: $PYTHON)" >&2
    exit 1
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    echo "launch.sh: creating $VENV with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$VENV"
  fi
  local want
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    echo "launch.sh: installing requirements.txt into $VENV (first run: several minutes)"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -r requirements.txt
    echo "$want" >"$VENV/.requirements.sha256"
  fi
}

case "${1:-}" in
  test)
    shift
    setup
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  setup)
    setup
    ;;
  -h | --help | help)
    sed -n '2,10s/^# \{0,1\}//p' "$0"
    ;;
  *)
    setup
    exec "$VENV/bin/python" -m webui "$@"
    ;;
esac
