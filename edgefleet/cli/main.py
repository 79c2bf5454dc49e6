"""The `edgefleet` command: one typer app with a sub-command group per concept."""

from __future__ import annotations

import logging

import typer

from edgefleet.cli import deployments, prefect_server, updates
from edgefleet.cli import telemetry as telemetry_cli
from edgefleet.cli.app import app_app
from edgefleet.cli.edge import edge_app
from edgefleet.cli.groups import group_app
from edgefleet.cli.lab import lab_app
from edgefleet.cli.notify import notify_app
from edgefleet.cli.registry import registry_app

# Prefect's event and log queues warn "Still processing items" while they drain as a command
# ends: nothing an operator can act on, and the items are still delivered.
for _queue in ("EventsWorker", "APILogWorker"):
    logging.getLogger(_queue).setLevel(logging.ERROR)

app = typer.Typer(
    help="edgefleet: deploy, update and watch container applications on fleets of edge "
    "devices. Every workflow is a Prefect flow of small retried tasks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(edge_app, name="edge")
app.add_typer(app_app, name="app")
app.add_typer(group_app, name="group")
deployments.register(app)
prefect_server.register(app)
telemetry_cli.register(app)
updates.register(app)
app.add_typer(registry_app, name="registry")
app.add_typer(notify_app, name="notify")
app.add_typer(lab_app, name="lab", help="A local lab of real dockerd edges and a registry.")
