"""Registry logins kept as Prefect Secret blocks: our records hold only the block's name.

The password travels as ``SecretStr`` from the block to the pull and never reaches a log
line or an edgefleet record.
"""

from __future__ import annotations

import json
from typing import Any

from prefect.blocks.system import Secret
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import SecretStr, ValidationError

from edgefleet import server
from edgefleet.errors import InvalidInput, NotFound
from edgefleet.models.inputs import SECRET_RE
from edgefleet.registry import Credentials


def _api() -> Any:
    """Talk to the server where flows will read the block (the one ``run_here`` reports to)."""
    return temporary_settings({PREFECT_API_URL: server.flow_api_url()})


def save_registry_login(name: str, *, username: str, password: str,
                        registry: str | None = None) -> None:
    """Create or replace the Secret block ``name`` holding a registry login."""
    if not SECRET_RE.match(name):
        raise InvalidInput(f"registry secret name {name!r} is not valid: use lowercase letters, "
                           "digits and '-'")
    if not username or not password:
        raise InvalidInput("a registry login needs a username and a password")
    value = {"username": username, "password": password, "registry": registry or ""}
    with _api():
        Secret(value=value).save(name=name, overwrite=True)


def load_registry_login(name: str) -> Credentials:
    """The login stored under ``name`` (a Prefect Secret block)."""
    with _api():
        try:
            block = Secret.load(name)
            assert isinstance(block, Secret)
            raw = block.get()
        except ValueError as exc:
            raise NotFound(f"no registry secret {name!r}: create it with `edgefleet registry "
                           f"login {name} --username U --password-stdin`") from exc
    data = json.loads(raw) if isinstance(raw, str) else raw
    try:
        return Credentials(username=data["username"],
                                   password=SecretStr(str(data["password"])),
                                   registry=data.get("registry") or None)
    except (KeyError, TypeError, ValidationError) as exc:
        raise InvalidInput(f"registry secret {name!r} must hold username and password") from exc
