"""One exception base for edgefleet, so callers (CLI, flows, API users) catch one thing.

    EdgefleetError
    ├── InvalidInput          bad input from the user; nothing was changed
    │   └── RefusedFile       a hostile or oversized file (also a ValueError, for pydantic)
    ├── NotFound              a named record does not exist
    ├── AlreadyExists         a record with that name already exists
    ├── InvalidTransition     the deployment's state does not allow the action
    │   └── StateConflict     a compare-and-set found another state (another run moved it)
    ├── EdgeUnreachable       the edge's Docker engine did not answer
    ├── EngineRequestFailed   the engine answered, with an error status
    ├── RegistryError         the image registry refused or did not answer
    ├── ImagePullError        an image could not be pulled onto an edge
    ├── DeploymentFailed      containers did not reach running/healthy in time
    ├── ComposeError          the compose binary exited non-zero
    └── LabError              the local lab could not be set up or torn down

SDK, httpx and subprocess errors are converted at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations


class EdgefleetError(Exception):
    """Base of every error edgefleet raises on purpose."""


class InvalidInput(EdgefleetError):
    """Input that fails validation; the records are unchanged."""


class RefusedFile(InvalidInput, ValueError):
    """A file refused at the door (size, encoding, nesting, aliases, duplicate keys, ...).

    A ValueError too, so that a pydantic validator raising it yields a validation error.
    """


class NotFound(EdgefleetError):
    """A named record does not exist."""


class AlreadyExists(EdgefleetError):
    """A record with the same unique name already exists."""


class InvalidTransition(EdgefleetError):
    """The deployment's current state does not allow the requested action."""


class StateConflict(InvalidTransition):
    """A state change found the deployment in a state it may not move from: another run
    moved it first (or the action is not allowed from there). Nothing was changed."""

    def __init__(self, message: str, *, found: str, action: str) -> None:
        super().__init__(message)
        self.found = found
        self.action = action


class EdgeUnreachable(EdgefleetError):
    """The edge's Docker engine did not answer (down, wrong address, or TLS refused)."""


class EngineRequestFailed(EdgefleetError):
    """The edge's Docker engine answered a request with an error status (it is reachable)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class RegistryError(EdgefleetError):
    """The image registry refused a request or could not be reached."""


class ImagePullError(EdgefleetError):
    """An image could not be pulled onto an edge."""


class DeploymentFailed(EdgefleetError):
    """Containers did not run (or become healthy) within the deploy timeout."""


class ComposeError(EdgefleetError):
    """The Docker Compose binary exited with an error."""


class LabError(EdgefleetError):
    """The local lab (dockerd edges, registry, images) could not be set up or torn down."""


def shown(value: object, width: int = 60) -> str:
    """``repr(value)`` cut to ``width``: a hostile value never floods an error message."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
