#!/usr/bin/env bash
# Creates ./.venv with edgefleet and its dev tools (idempotent; reinstalls when pyproject changes).
# System packages (docker.io, docker-registry, busybox-static) are installed by `edgefleet lab up`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "edgefleet needs Python 3.11 or newer")'
if [[ ! -x "$VENV/bin/edgefleet" || "$ROOT/pyproject.toml" -nt "$VENV/.installed" ]]; then
  echo "setting up $VENV (pip install -e .[dev,postgres]) ..."
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e "$ROOT[dev,postgres]"
  touch "$VENV/.installed"
fi
