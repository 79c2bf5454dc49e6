"""A launch from the Prefect UI (flow `launch-application`): the form's sensitive entries,
what was checked and the report it leaves (its runs' names: ``models.run_names``). Pure: no
records, no Prefect."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from edgefleet.errors import InvalidInput
from edgefleet.models.parameters import MASK, Parameter


class SecretEntry(BaseModel):
    """A sensitive parameter on the launch form. An entry with a named ``value`` field, not a
    map's value: the Prefect UI draws a password field only for a named property."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Sensitive parameter")

    name: str = Field(title="Name", description="the parameter's name (`edgefleet app show`)")
    value: SecretStr = Field(title="Value",
                             description="kept in a Prefect Secret block, never shown")


def secret_values(entries: list[SecretEntry]) -> dict[str, SecretStr]:
    """The entries by name; a name given twice is refused (which of its values was meant?)."""
    names = [e.name for e in entries]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInput(f"{', '.join(twice)} given twice in secrets: give each parameter "
                           "once")
    return {e.name: e.value for e in entries}


def masked(value: object, names: set[str]) -> object:
    """A run's recorded parameter with the values of ``names`` masked: a mapping's (``env``)
    or a list of name/value entries' (``secrets``); anything else as it was."""
    if isinstance(value, dict):
        return {k: MASK if k in names else v for k, v in value.items()}
    if isinstance(value, list):
        return [{**item, "value": MASK}
                if isinstance(item, dict) and item.get("name") in names and "value" in item
                else item for item in value]
    return value


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
