"""Calls on pull-mode edges: a step whose engine takes no inbound connection runs on the
edge's own agent.

A pull edge runs ``edgefleet agent --edge NAME``: a Prefect worker of the pool
``edgefleet-pull`` polling the queue ``edge-NAME``, beside its engine, with no database
credentials. A function marked ``@on_edge`` (its first argument an ``EngineConnection``) that
is handed a pull edge's connection becomes a run of the ``edge-operation`` deployment on that
queue: the agent runs the same function against its local engine and hands the result back
as an artifact of that run; the caller, on the control plane, records it. Arguments and
results cross as JSON, checked on both sides by the function's own type hints.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import time
import typing
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel, SecretStr, TypeAdapter

from edgefleet import errors
from edgefleet.errors import EdgefleetError, EdgeUnreachable
from edgefleet.models.connections import DEFAULT_LOCAL_ENGINE, EngineConnection, agent_edge
from edgefleet.workers import OPERATION_FLOW, PULL_POOL

F = TypeVar("F", bound=Callable[..., Any])

AGENT_DOCKER_HOST_ENV = "EDGEFLEET_AGENT_DOCKER_HOST"  # its local engine
RESULT_TYPE = "edgefleet-edge-result"
AGENT_HEARTBEAT_SECONDS = 5  # an agent's worker heartbeats: the edge's, for the sweep
# An agent polls every second; a call not taken this long after it was made means no agent.
PICKUP_SECONDS = 60.0
POLL_SECONDS = 0.5
WORKER_PAGE = 200  # agents' heartbeats are read this many workers at a time
# Modules whose @on_edge functions an agent may be asked to run (nothing else is imported).
OPERATION_MODULES = (
    "edgefleet.tasks.images", "edgefleet.tasks.containers", "edgefleet.tasks.compose",
    "edgefleet.tasks.updates", "edgefleet.tasks.reconcile", "edgefleet.agent_readings",
    "edgefleet.api.logs",
)

_OPERATIONS: dict[str, Callable[..., Any]] = {}


def queue_of(edge: str) -> str:
    """The work queue of one pull edge's agent."""
    return f"edge-{edge}"


def agent_name(edge: str) -> str:
    """The Prefect worker name of an edge's agent (its heartbeats are looked up by it)."""
    return f"agent-{edge}"


def on_edge(fn: F) -> F:
    """Run ``fn(conn, ...)`` here for a push edge (or on the agent itself), else on the pull
    edge's agent. Put it under ``@task``: the task run is then the call, retried as one."""
    key = f"{fn.__module__}:{fn.__qualname__}"
    _OPERATIONS[key] = fn

    @functools.wraps(fn)
    def wrapper(conn: EngineConnection, *args: Any, **kwargs: Any) -> Any:
        if conn.reached_here:
            return fn(conn, *args, **kwargs)
        return call_on_edge(key, conn, *args, **kwargs)

    return typing.cast(F, wrapper)


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except (NameError, TypeError):  # a hint imported only for type checkers: JSON as is
        return {}


def _adapter(hints: dict[str, Any], name: str) -> TypeAdapter[Any]:
    return TypeAdapter(hints.get(name, Any))


def encode_arguments(key: str, conn: EngineConnection, *args: Any, **kwargs: Any
                     ) -> dict[str, Any]:
    """The call's arguments but the connection, as JSON (by the function's hints)."""
    fn = _OPERATIONS[key]
    bound = inspect.signature(fn).bind(conn, *args, **kwargs)
    for name, value in bound.arguments.items():
        if isinstance(value, BaseModel) and any(
                isinstance(getattr(value, f), SecretStr) for f in type(value).model_fields):
            raise errors.InvalidInput(
                f"edge {conn.name} is a pull edge: {key.rsplit(':', 1)[-1]} cannot hand it "
                f"{name} (a secret) yet; use a registry it reaches without a login")
    first = next(iter(inspect.signature(fn).parameters))
    hints = _hints(fn)
    return {name: _adapter(hints, name).dump_python(value, mode="json")
            for name, value in bound.arguments.items() if name != first}


def call_on_edge(key: str, conn: EngineConnection, *args: Any, **kwargs: Any) -> Any:
    """Run one operation on a pull edge's agent and return its result (or raise its error)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from edgefleet import server

    arguments = encode_arguments(key, conn, *args, **kwargs)
    operation = key.rsplit(":", 1)[-1]
    # a flow run's API, or the control plane's for a command (`edgefleet logs`)
    with temporary_settings({PREFECT_API_URL: server.flow_api_url()}):
        silent = agent_silence(conn.name)
        if silent:  # fail now, not after a pickup wait per try
            raise EdgeUnreachable(silent)
        run = run_deployment(
            name=f"{OPERATION_FLOW}/{OPERATION_FLOW}", timeout=0,
            parameters={"edge": conn.name, "operation": key, "arguments": arguments,
                        "address": conn.address},
            work_queue_name=queue_of(conn.name), flow_run_name=f"{operation} on {conn.name}")
        assert isinstance(run, FlowRun)  # called from sync code: the run, not a coroutine
        with get_client(sync_client=True) as client:
            state = _wait(client, run.id, conn.name, operation)
            found = _result_of(client, run.id)
    if state.is_completed() and found is not None and "result" in found:
        return _adapter(_hints(_OPERATIONS[key]), "return").validate_python(found["result"])
    if found and "error" in found:
        raise _error_of(found["error"])
    raise EdgeUnreachable(f"edge {conn.name}: {operation} on its agent ended {state.name}"
                          f"{': ' + state.message if state.message else ''}")


def agent_heartbeats(edges: Sequence[str]) -> dict[str, datetime]:
    """The last heartbeat of each named edge's agent (absent: never heard from)."""
    from prefect.client.orchestration import get_client

    wanted = {agent_name(edge): edge for edge in edges}
    found: dict[str, datetime] = {}
    with get_client(sync_client=True) as client:
        offset = 0
        while True:  # the API filters workers by heartbeat and status, not by name
            try:
                page = client.read_workers_for_work_pool(PULL_POOL, offset=offset,
                                                         limit=WORKER_PAGE)
            except Exception:  # no pool yet (no agent ever ran): nobody was heard from
                return found
            found.update({wanted[w.name]: w.last_heartbeat_time for w in page
                          if w.name in wanted and w.last_heartbeat_time is not None})
            if len(page) < WORKER_PAGE:
                return found
            offset += WORKER_PAGE


def agent_silence(edge: str) -> str | None:
    """Why ``edge``'s agent is not there, or None while it beats (asks the API)."""
    return silence(edge, agent_heartbeats([edge]).get(edge), datetime.now(UTC))


def silence(edge: str, beat: datetime | None, now: datetime) -> str | None:
    """Why an agent last heard at ``beat`` is not there (never heard from, or silent for
    three heartbeats), or None."""
    if beat is not None and now - beat <= timedelta(seconds=3 * AGENT_HEARTBEAT_SECONDS):
        return None
    heard = f"last heard {beat:%Y-%m-%d %H:%M:%S} UTC" if beat else "never heard from"
    return (f"edge {edge}: its agent is {heard} (is `edgefleet agent --edge {edge}` "
            "running there?)")


def _wait(client: Any, run_id: UUID, edge: str, operation: str) -> Any:
    """The run's final state; a run no agent takes within ``PICKUP_SECONDS`` is cancelled."""
    from prefect.states import Cancelled

    made = time.monotonic()
    while True:
        run = client.read_flow_run(run_id)
        state = run.state
        if state is not None and state.is_final():
            return state
        if (state is None or state.is_scheduled() or state.is_pending()) \
                and time.monotonic() - made > PICKUP_SECONDS and run.start_time is None:
            client.set_flow_run_state(run_id, Cancelled(message="no agent took it"), force=True)
            raise EdgeUnreachable(
                f"edge {edge}: no agent took {operation} within {PICKUP_SECONDS:.0f}s; is "
                f"`edgefleet agent --edge {edge}` running there and reaching the Prefect API?")
        time.sleep(POLL_SECONDS)


def _result_of(client: Any, run_id: UUID) -> dict[str, Any] | None:
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterType,
    )

    found = client.read_artifacts(artifact_filter=ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
        type=ArtifactFilterType(any_=[RESULT_TYPE])), limit=1)
    data = found[0].data if found else None
    return data if isinstance(data, dict) else None


def _error_of(error: dict[str, Any]) -> Exception:
    """The agent's exception as the same edgefleet error class (so retry rules and messages
    still apply), else an ``EdgefleetError`` naming the original type."""
    name, message = str(error.get("type", "")), str(error.get("message", ""))
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, EdgefleetError):
        try:
            return cls(message)
        except TypeError:  # an error with more fields (StateConflict, EngineRequestFailed)
            pass
    if name == "EngineRequestFailed":
        return errors.EngineRequestFailed(message, int(error.get("status") or 500))
    return EdgefleetError(f"{message} ({name} on the edge)" if name else message)


# ---------------------------------------------------------------- on the agent


def local_connection(edge: str, address: str | None) -> EngineConnection:
    """The agent's own engine: its local socket (or what the agent was told)."""
    return EngineConnection(name=edge, mode="pull", address=address,
                            docker_host=os.environ.get(AGENT_DOCKER_HOST_ENV)
                            or DEFAULT_LOCAL_ENGINE)


def operation(key: str) -> Callable[..., Any]:
    """A registered operation by key, after importing its module (one of
    ``OPERATION_MODULES``, nothing else); the Prefect task of that name where there is one
    (so the step is a task run on the edge)."""
    module_name, _, name = key.partition(":")
    if module_name in OPERATION_MODULES:
        importlib.import_module(module_name)
    fn = _OPERATIONS.get(key)
    if fn is None:
        raise errors.InvalidInput(f"{key!r} is not an operation an agent runs")
    found = getattr(importlib.import_module(module_name), name, None)
    return found if callable(found) and getattr(found, "fn", None) is not None else fn


def run_here(key: str, edge: str, address: str | None, arguments: dict[str, Any]
             ) -> dict[str, Any]:
    """Run one operation against the local engine: ``{"result": ...}`` or ``{"error": ...}``
    (the caller raises the same error)."""
    if agent_edge() != edge:
        raise errors.InvalidInput(
            f"this process is the agent of {agent_edge() or 'no edge'}, not of {edge!r}")
    target = operation(key)
    fn = _OPERATIONS[key]
    hints = _hints(fn)
    values = {name: _adapter(hints, name).validate_python(value)
              for name, value in arguments.items()}
    try:
        result = target(local_connection(edge, address), **values)
    except Exception as exc:  # handed back whole: the caller decides what it means
        error: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
        if isinstance(exc, errors.EngineRequestFailed):
            error["status"] = exc.status
        return {"error": error}
    return {"result": _adapter(hints, "return").dump_python(result, mode="json")}
