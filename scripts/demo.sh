#!/usr/bin/env bash
# The demo, end to end on real components: a lab of 2 dockerd edges (mutual TLS) and a
# registry, the Prefect server with served flows, the hello app deployed to both edges,
# version 1.1.0 published (operators notified), one edge updated, then fleet telemetry.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
export PATH="$ROOT/.venv/bin:$PATH"
# A short soak keeps the demo brisk; the default for real fleets is 30 s.
export EDGEFLEET_SOAK_SECONDS="${EDGEFLEET_SOAK_SECONDS:-8}"
step() { printf '\n\033[1;34m== %s\033[0m\n' "$*"; }
json() { python3 -c "import json,sys; data=json.load(sys.stdin); print($1)"; }

step "1. the lab: 2 dockerd edges over mutual TLS, a registry, sample images"
edgefleet lab up --edges 2
REGISTRY=$(edgefleet lab status --json | json 'data["registry"]')

step "2. Prefect server + every edgefleet flow served as a deployment"
edgefleet up

step "3. vendor: the hello application 1.0.0, published"
for old in $(edgefleet deployments --json | json '" ".join(d["id"] for d in data if d["application"] == "hello")'); do
  edgefleet delete "$old" --force >/dev/null   # a clean slate when the demo runs again
done
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

step "7. telemetry (the served collect-telemetry sweep runs every few seconds)"
if edgefleet telemetry --help >/dev/null 2>&1; then
  for _ in $(seq 60); do
    edgefleet telemetry --json | json 'all(e["latest"] for e in data)' | grep -q True && break
    sleep 1
  done
  edgefleet telemetry
fi

UI=$(python3 -c 'import json,os,pathlib; h=pathlib.Path(os.environ.get("EDGEFLEET_HOME", pathlib.Path.home()/".edgefleet")); print(json.loads((h/"run"/"prefect.json").read_text())["ui_url"])')
printf '\nPrefect UI: %s  (flow runs, the update report artifacts)\n' "$UI"
echo "tear down with: .venv/bin/edgefleet down && .venv/bin/edgefleet lab down"
