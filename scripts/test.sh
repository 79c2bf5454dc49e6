#!/usr/bin/env bash
# The test command: lint, type-check, check the layers (lint-imports), then every test (the
# lab tests start a real lab: dockerd edges with mutual TLS, a registry, compose, a Prefect
# server).
# Pass pytest arguments through, e.g. `./scripts/test.sh -m "not lab and not slow"` for the
# fast tier.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
# the Prefect UI test screenshots the UI in Debian's headless chromium
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }
fi
# the records tests run again on a real PostgreSQL server (Debian's, started by the tests)
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q postgresql || { apt-get update -q && apt-get install -y -q postgresql; }
fi
export PATH="$ROOT/.venv/bin:$PATH"
ruff check .
mypy
lint-imports
# the 30 slowest tests are listed too, to keep an eye on the suite time
pytest --durations=30 "$@"
