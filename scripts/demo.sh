#!/usr/bin/env bash
# The demo, end to end on real components: a lab of 2 dockerd edges (mutual TLS) and a
# registry, the Prefect server with its work pool and a worker, the hello app deployed to both edges,
# version 1.1.0 published (operators notified), one edge updated, then fleet telemetry.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
export PATH="$ROOT/.venv/bin:$PATH"
# A short soak keeps the demo brisk; the default for real fleets is 30 s.
export EDGEFLEET_SOAK_SECONDS="${EDGEFLEET_SOAK_SECONDS:-8}"
# Samples every 15 s on the lab edges so that step 7 has fresh figures (the default is 60 s).
TELEMETRY_INTERVAL="${DEMO_TELEMETRY_INTERVAL:-15}"
# Waiting for the served sweep in step 7 is bounded; past it, one sweep runs in-process.
TELEMETRY_WAIT="${DEMO_TELEMETRY_WAIT:-45}"
if [[ -t 1 ]]; then
  step() { printf '\n\033[1;34m== %s\033[0m\n' "$*"; }
else  # piped (| tee, CI): no escape codes, and tables as wide as the terminal, else 200
  step() { printf '\n== %s\n' "$*"; }
  if [[ -z "${COLUMNS:-}" ]]; then
    COLUMNS=$( (stty size </dev/tty | cut -d' ' -f2) 2>/dev/null || true)
    [[ "$COLUMNS" =~ ^[0-9]+$ ]] && (( COLUMNS >= 40 )) || COLUMNS=200
    export COLUMNS
  fi
fi
json() { python3 -c "import json,sys; data=json.load(sys.stdin); print($1)"; }

step "1. the lab: 2 dockerd edges over mutual TLS, a registry, sample images"
edgefleet lab up --edges 2
REGISTRY=$(edgefleet lab status --json | json 'data["registry"]')

step "2. Prefect server + every edgefleet flow as a deployment of work pool edgefleet, one worker"
edgefleet up
for edge in lab-1 lab-2; do  # each edge's own intervals (the served sweep looks for a due edge every 2 s)
  edgefleet edge set "$edge" --telemetry-interval "$TELEMETRY_INTERVAL" --heartbeat-interval 20
done

step "3. vendor: the hello application 1.0.0, published"
for old in $(edgefleet deployments --json | json '" ".join(d["id"] for d in data if d["application"] == "hello")'); do
  edgefleet delete "$old" --force >/dev/null   # a clean slate when the demo runs again
done
# hello from an earlier demo whose lab (and registry address) is gone: define it again
if HELLO=$(edgefleet app show hello --json 2>/dev/null) && json \
    "any(not (v['image'] or '').startswith('$REGISTRY/') for v in data['versions'])" \
    <<<"$HELLO" | grep -q True; then
  edgefleet app delete hello
fi
edgefleet app show hello >/dev/null 2>&1 || \
  edgefleet app create hello --version 1.0.0 --image "$REGISTRY/edgefleet/hello:1.0.0" --port 8080
edgefleet app publish hello 1.0.0
edgefleet edge list

step "4. operator: deploy hello to both edges (each a flow run in the Prefect UI)"
edgefleet deploy hello --edge lab-1 --version 1.0.0
edgefleet deploy hello --edge lab-2 --version 1.0.0
edgefleet deployments
ON_LAB1=$(edgefleet deployments --json | json '[d["id"] for d in data if d["application"] == "hello" and d["edge"] == "lab-1"][-1]')
URL=$(edgefleet status "$ON_LAB1" --json | json 'data["urls"][0]')
printf 'GET %s -> %s\n' "$URL" "$(curl -s --noproxy '*' "$URL" | grep -o 'hello from [^<]*')"

step "5. vendor: version 1.1.0 published -> event -> trigger -> one notification per deployment"
edgefleet app show hello --json | json '"1.1.0" in [v["version"] for v in data["versions"]]' | grep -q True || \
  edgefleet app version hello 1.1.0 --image "$REGISTRY/edgefleet/hello:1.1.0" --port 8080
edgefleet app publish hello 1.1.0
for _ in $(seq 60); do
  COUNT=$(edgefleet notifications --json | json 'sum(1 for n in data if n["application"] == "hello" and n["to_version"] == "1.1.0")')
  [[ "$COUNT" -ge 2 ]] && break
  sleep 1
done
edgefleet notifications

step "6. operator: update the lab-1 deployment (pull first, soak ${EDGEFLEET_SOAK_SECONDS}s, roll back on failure)"
edgefleet update "$ON_LAB1" --to 1.1.0
URL=$(edgefleet status "$ON_LAB1" --json | json 'data["urls"][0]')
printf 'GET %s -> %s\n' "$URL" "$(curl -s --noproxy '*' "$URL" | grep -o 'hello from [^<]*')"
edgefleet deployments

step "7. telemetry: the served collect-telemetry sweep samples each edge on its interval"
# Edges (one a line) whose newest sample is older than $1 (an ISO time) or missing.
not_sampled_since() {
  edgefleet telemetry --json | python3 -c '
import json, sys
from datetime import datetime, timezone
def moment(text):
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
since = moment(sys.argv[1])
for edge in json.load(sys.stdin):
    latest = edge["latest"]
    if not latest or moment(latest["time"]) < since:
        print(edge["edge"])' "$1"
}
UPDATED=$(date -u +%Y-%m-%dT%H:%M:%S+00:00)
WAIT_START=$SECONDS
PENDING=$(not_sampled_since "$UPDATED")
while [[ -n "$PENDING" ]] && (( SECONDS - WAIT_START < TELEMETRY_WAIT )); do
  printf 'waiting for a sample since the update from: %s (%ds of %ds)\n' \
    "${PENDING//$'\n'/, }" $((SECONDS - WAIT_START)) "$TELEMETRY_WAIT"
  sleep 5
  PENDING=$(not_sampled_since "$UPDATED")
done
if [[ -n "$PENDING" ]]; then
  echo "no served sample within ${TELEMETRY_WAIT}s: one sweep in this process (edgefleet telemetry --collect)"
  timeout 120 edgefleet telemetry --collect --json >/dev/null || echo "the in-process sweep failed"
else
  echo "every edge sampled by the served sweep after $((SECONDS - WAIT_START))s"
fi
edgefleet telemetry --since 5m   # the window of the sample count and the trends (default 1h)
edgefleet edge list

UI=$(python3 -c 'import json,os,pathlib; h=pathlib.Path(os.environ.get("EDGEFLEET_HOME", pathlib.Path.home()/".edgefleet")); print(json.loads((h/"run"/"prefect.json").read_text())["ui_url"])')
printf '\nPrefect UI: %s  (flow runs, the update report artifacts)\n' "$UI"
echo "tear down with: .venv/bin/edgefleet down && .venv/bin/edgefleet lab down"
