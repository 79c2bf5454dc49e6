"""How flow runs are named, so that the Prefect UI's run list reads like a change log: what
was done, of which application and version, and where. Pure: no Prefect."""

from __future__ import annotations

MAX_NAMED_EDGES = 5  # a run name lists this many edges, then says how many more


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


def update_run_name(application: str, version: str, edge: str) -> str:
    """``update hello 1.1.0 → lab-3``: the version updated to."""
    return f"update {application} {version} → {edge}"


def stop_run_name(application: str, version: str, edge: str) -> str:
    """``stop hello 1.0.0 on lab-1``: the version that was running."""
    return f"stop {application} {version} on {edge}"
