"""A launch from the Prefect UI (flow `launch-application`): what was checked, how its runs
are named, and the report it leaves. Pure: no records, no Prefect."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from edgefleet.models.parameters import Parameter

MAX_NAMED_EDGES = 5  # a run name lists this many edges, then says how many more


class LaunchPlan(BaseModel):
    """A launch as checked (nothing recorded yet): the version resolved, the edges a list or
    a selector named, and the required parameters the run must still ask for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    application: str
    version: str
    edges: list[str]
    sensitive: list[str] = []  # parameters whose values go to Prefect Secret blocks
    missing: list[Parameter] = []


class LaunchedDeployment(BaseModel):
    """One deployment a launch created, as its run left it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deployment_id: str
    edge: str
    state: str
    urls: list[str] = []
    last_error: str | None = None
    run_url: str | None = None


def edge_list(edges: list[str]) -> str:
    shown = ", ".join(edges[:MAX_NAMED_EDGES])
    more = len(edges) - MAX_NAMED_EDGES
    return f"{shown} (+{more} more)" if more > 0 else shown


def launch_run_name(application: str, version: str | None, edges: list[str] | None,
                    selector: str | None) -> str:
    """``launch hello 1.1.0 → lab-1, lab-2``; before the check resolved them, ``newest``
    for the version and the selector for its edges."""
    where = edge_list(edges) if edges else (f"edges {selector}" if selector else "?")
    return f"launch {application} {version or 'newest'} → {where}"


def deploy_run_name(application: str, version: str, edge: str) -> str:
    return f"deploy {application} {version} → {edge}"


def report(plan: LaunchPlan, rows: list[LaunchedDeployment]) -> str:
    """The launch's markdown artifact: one line per deployment, with state and URLs."""
    started = sum(r.state == "STARTED" for r in rows)
    lines = [f"# launch {plan.application} {plan.version}", "",
             f"{started} of {len(rows)} deployments STARTED.", "",
             "| edge | deployment | state | URLs | run |", "|---|---|---|---|---|"]
    for row in rows:
        urls = " ".join(f"[{u}]({u})" for u in row.urls) or "-"
        state = row.state if not row.last_error else f"{row.state}: {_cell(row.last_error)}"
        run = f"[run]({row.run_url})" if row.run_url else "-"
        lines.append(f"| {row.edge} | `{row.deployment_id[:12]}` | {state} | {urls} | {run} |")
    lines += ["", f"Status of one: `edgefleet status {rows[0].deployment_id[:12]}`"
              if rows else "Nothing was deployed."]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Text inside a markdown table cell: one line, no column break."""
    one = " ".join(text.split()).replace("|", "\\|")
    return one if len(one) <= 300 else one[:297] + "..."
