"""The records edgefleet keeps (SQLModel tables), one family per concept.

Edge, Application, ApplicationVersion, Deployment, DeploymentGroup, AppliedSpec, ContainerStatus and
LogCursor. Input validation lives in ``models.inputs``; tables hold only what was already
validated. The records are the only state: whatever a later run needs (the spec applied, the
one before it, log cursors) is here, never in files of the machine that ran a flow.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from edgefleet.models.states import DeploymentState


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Edge(SQLModel, table=True):
    """A Docker engine we drive: push (we connect, TCP + mutual TLS) or pull (its agent
    polls the Prefect API and runs each step beside the engine, ``edgefleet.edge_calls``)."""

    __tablename__ = "edge"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    docker_host: str  # pull: the engine as its agent reaches it (a local socket)
    mode: str = Field(default="push", sa_column_kwargs={"server_default": "push"})
    # the name or (VPN) address the edge's users reach; None: the docker host's host
    address: str | None = None
    # the operator's KEY=VALUE labels (edgefleet.selectors), picked by `edge list --selector`
    labels: dict[str, str] = Field(default_factory=dict,
                                   sa_column=Column(JSON, nullable=False, server_default="{}"))
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    telemetry_interval: int = 60
    heartbeat_interval: int = 20
    status: str = "UNKNOWN"
    last_contact: datetime | None = None
    # telemetry bookkeeping: when the last sample / heartbeat was due and attempted, the
    # newest sample (its counters give the next CPU %) and the last failed contact
    last_sample_at: datetime | None = None
    last_heartbeat_at: datetime | None = None
    last_sample_id: int | None = None
    last_disk_at: datetime | None = None  # last `system df` read (it is costly on an edge)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)


class Application(SQLModel, table=True):
    __tablename__ = "application"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    created_at: datetime = Field(default_factory=utcnow)


class ApplicationVersion(SQLModel, table=True):
    """One version of an application: what to run (an image, a compose file or a stack)."""

    __tablename__ = "application_version"
    __table_args__ = (UniqueConstraint("application_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    version: str
    kind: str  # image | compose | swarm
    image: str | None = None
    compose: str | None = Field(default=None, sa_column=Column(Text))
    env: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    ports: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Name of a Prefect Secret block with {"username", "password"}: never the password itself.
    registry_secret: str | None = None
    # created with --allow-privileged; `privileges` lists the host-level privileges its file
    # asks for (models.privileges), shown wherever the version is
    allow_privileged: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    privileges: list[str] = Field(default_factory=list,
                                  sa_column=Column(JSON, nullable=False, server_default="[]"))
    # models.parameters.Parameter as data: discovered in the file, refined by declarations
    parameters: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]"))
    # named URL templates (edgefleet.url_templates), rendered per deployment; never part of
    # a container's spec, so a version changing only these recreates nothing
    urls: dict[str, str] = Field(default_factory=dict,
                                 sa_column=Column(JSON, nullable=False, server_default="{}"))
    # files bundled with the version (--file): plain name -> UTF-8 text (edgefleet.bundled_files)
    files: dict[str, str] = Field(default_factory=dict,
                                  sa_column=Column(JSON, nullable=False, server_default="{}"))
    published: bool = False
    published_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Deployment(SQLModel, table=True):
    """An application version running (or meant to run) on one edge."""

    __tablename__ = "deployment"

    id: str = Field(default_factory=new_id, primary_key=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    version_id: int = Field(foreign_key="application_version.id")
    edge_id: int = Field(foreign_key="edge.id", index=True)
    env: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: str = DeploymentState.CREATED.value
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    flow_run_id: str | None = None
    update_available: str | None = None
    degraded: str | None = Field(default=None, sa_column=Column(Text))  # from telemetry
    # models.policies.UpdatePolicy as data; {} is the default policy
    policy: dict[str, Any] = Field(default_factory=dict,
                                   sa_column=Column(JSON, nullable=False, server_default="{}"))
    # The AppliedSpec the edge is meant to run now (None before the first apply). No foreign
    # key: the specs point back at their deployment, and one cycle is one too many to delete.
    spec_id: int | None = None
    # the deployment group it is a member of (None: a deployment of its own)
    group_id: str | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class DeploymentGroup(SQLModel, table=True):
    """One application on a fleet: the edges it targets (a list, or a selector over their
    labels), the target version, and how its rollouts go (``models.groups``).

    Its members are the deployments whose ``group_id`` is this group's id, one per edge.
    ``state`` moves only by the table of ``models.groups`` (compare-and-set, as deployments).
    """

    __tablename__ = "deployment_group"

    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = Field(index=True, unique=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    version: str  # the target version
    # exactly one of: a static list of edge names, or a selector text (edgefleet.selectors)
    edges: list[str] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
    selector: str | None = None
    env: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # models.groups.RolloutOptions as data
    options: dict[str, Any] = Field(default_factory=dict,
                                    sa_column=Column(JSON, nullable=False, server_default="{}"))
    prune: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    state: str
    reason: str | None = Field(default=None, sa_column=Column(Text))
    # the rollout under way (or the last one): wave reached of waves, and its flow run
    wave: int = 0
    waves: int = 0
    flow_run_id: str | None = None
    # models.groups.AutoUpdate: which newly published versions the group rolls out by itself;
    # "newly": published after auto_update_since (set when the level is set, and moved to
    # each version auto-update rolls out, so no version is ever tried twice by itself)
    auto_update: str = Field(default="off", sa_column_kwargs={"server_default": "off"})
    auto_update_since: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class AppliedSpec(SQLModel, table=True):
    """One spec given to a deployment's edge: the file as applied (images pinned by digest)
    and the environment the CLI ran with.

    Stop, logs and rollback write the file again from this row on whichever machine runs
    them; ``previous_id`` is the spec that was current when this one was applied.
    """

    __tablename__ = "applied_spec"

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: str = Field(foreign_key="deployment.id", index=True)
    version: str
    kind: str  # image | compose | swarm
    # compose: the rendered model (JSON); swarm: the stack file (YAML); image: the container
    text: str = Field(sa_column=Column(Text, nullable=False))
    env: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    digests: dict[str, str | None] = Field(default_factory=dict,
                                           sa_column=Column(JSON, nullable=False))
    # compose's own `config` model of the source this was rendered from, by a hash of
    # (file, environment, project): a redeploy or forced update does not run `config` again
    source_key: str | None = None
    resolved: dict[str, Any] | None = Field(default=None,
                                            sa_column=Column(JSON(none_as_null=True)))
    previous_id: int | None = None
    outcome: str = "applied"  # applied | rolled back
    flow_run_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class ContainerStatus(SQLModel, table=True):
    """What we last observed of one container (or swarm task) of a deployment."""

    __tablename__ = "container_status"

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: str = Field(foreign_key="deployment.id", index=True)
    service: str
    container_id: str
    image: str
    digest: str | None = None
    state: str
    health: str | None = None
    restart_count: int = 0
    ports: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    urls: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class LogCursor(SQLModel, table=True):
    """Where the last log fetch of a deployment's service stopped, so the next one resumes."""

    __tablename__ = "log_cursor"
    __table_args__ = (UniqueConstraint("deployment_id", "service"),)

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: str = Field(foreign_key="deployment.id", index=True)
    service: str
    last_timestamp: str
    lines_at_timestamp: int = 0


class Notification(SQLModel, table=True):
    """An operator is told once that a deployment can be updated (or was rolled back).

    ``key`` is what makes it unique per deployment and reason: the new digest or tag for an
    image update, the published version for a version update.
    """

    __tablename__ = "notification"
    __table_args__ = (UniqueConstraint("deployment_id", "reason", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    deployment_id: str = Field(foreign_key="deployment.id", index=True)
    application: str
    from_version: str
    to_version: str
    reason: str  # image | version | rollback
    key: str
    message: str = Field(sa_column=Column(Text, nullable=False))
    link: str
    command: str
    acknowledged: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    # set by the one reconcile that sends the notice's event again (its first emission never
    # reached the server); a notice is announced again at most once
    announced_again_at: datetime | None = None


class Redelivery(SQLModel, table=True):
    """A notify channel's failed delivery that edgefleet sends again, once: Prefect's
    automations do not retry a failed action. Keyed by the action's invocation id, so
    concurrent reconciles claim it once; ``outcome`` is None until the send ends, and
    ``created_at`` is when it was last claimed (a claim whose run died is taken over)."""

    __tablename__ = "redelivery"

    invocation: str = Field(primary_key=True)
    channel: str
    event_id: str
    reason: str = Field(sa_column=Column(Text, nullable=False))  # why the delivery failed
    outcome: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)


def as_dict(row: Any) -> dict[str, Any]:
    """A record as JSON-ready data."""
    data: dict[str, Any] = row.model_dump()
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = value.isoformat()
    return data
