#!/usr/bin/env bash
# The demo: a real lab (2 dockerd edges with mutual TLS + a registry), the Prefect server
# with served flows, then the hello application deployed to both edges.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
export PATH="$ROOT/.venv/bin:$PATH"
step() { printf '\n\033[1;34m== %s\033[0m\n' "$*"; }

step "lab: 2 edges, a registry, sample images"
edgefleet lab up --edges 2
REGISTRY=$(edgefleet lab status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["registry"])')

step "Prefect server + served edgefleet flows"
edgefleet up

step "vendor: the hello application, version 1.0.0, published"
edgefleet app show hello >/dev/null 2>&1 || \
  edgefleet app create hello --version 1.0.0 --image "$REGISTRY/edgefleet/hello:1.0.0" --port 8080
edgefleet app publish hello 1.0.0
edgefleet app list

step "edges"
edgefleet edge list

step "operator: deploy hello to both edges"
for edge in lab-1 lab-2; do
  edgefleet deploy hello --edge "$edge"
done

step "deployments"
edgefleet deployments
URL=$(edgefleet deployments --json | python3 -c 'import json,sys; d=[x for x in json.load(sys.stdin) if x["state"]=="STARTED"]; print(d[-1]["urls"][0])')
step "the page at $URL"
curl -s --noproxy '*' "$URL"
printf '\nPrefect UI: %s\n' "$(python3 -c 'import json,pathlib,os; print(json.loads((pathlib.Path(os.environ.get("EDGEFLEET_HOME", pathlib.Path.home()/".edgefleet"))/"run"/"prefect.json").read_text())["ui_url"])')"
echo "tear down with: .venv/bin/edgefleet down && .venv/bin/edgefleet lab down"
