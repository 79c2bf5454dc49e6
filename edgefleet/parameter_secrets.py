"""Sensitive parameter values kept as Prefect Secret blocks, one per deployment (or group)
and parameter: the record holds only the block's name (``parameters.secret_block_name``; a
group's members hold their group's), and the value is read back inside the task that hands
it to compose or the engine, so it never reaches a record, a flow-run parameter, a log or an
artifact.
"""

from __future__ import annotations

from prefect.blocks.system import Secret
from prefect.settings import PREFECT_API_URL, temporary_settings

from edgefleet import parameters as P
from edgefleet import server
from edgefleet.errors import NotFound


def save_values(owner: str, values: dict[str, str],
                into: dict[str, str] | None = None) -> dict[str, str]:
    """Store each value in its block, made for ``owner`` (a deployment's or a group's id);
    returns name -> block name (what the record keeps). ``into`` gets each block's name
    just before it is saved, so a caller whose later step fails deletes what may have been
    saved, even when this call itself fails half-way (deleting a missing block is a no-op)."""
    refs: dict[str, str] = {} if into is None else into
    with temporary_settings({PREFECT_API_URL: server.flow_api_url()}):
        for name, value in values.items():
            refs[name] = P.secret_block_name(owner, name)
            Secret(value=value).save(name=refs[name], overwrite=True)
    return refs


def resolved(env: dict[str, str]) -> dict[str, str]:
    """``env`` with each reference replaced by the value of its block."""
    refs = P.references(env)
    if not refs:
        return env
    values = dict(env)
    with temporary_settings({PREFECT_API_URL: server.flow_api_url()}):
        for name, block in refs.items():
            try:
                secret = Secret.load(block)
            except ValueError as exc:
                raise NotFound(f"the sensitive value of {name} is gone (Prefect Secret block "
                               f"{block} was deleted): deploy again with --env {name}=...") from exc
            assert isinstance(secret, Secret)
            values[name] = str(secret.get())
    return values


def delete_values(env: dict[str, str], owner: str) -> int:
    """Delete the blocks ``env`` refers to that were made for ``owner`` (best effort: a
    missing one is already gone); a member's references to its group's blocks stay."""
    refs = P.owned_references(env, owner)
    gone = 0
    if not refs:
        return 0
    from prefect.client.orchestration import get_client

    with temporary_settings({PREFECT_API_URL: server.flow_api_url()}), \
            get_client(sync_client=True) as client:
        for block in refs.values():
            try:
                doc = client.read_block_document_by_name(block, block_type_slug="secret")
                assert doc.id is not None
                client.delete_block_document(doc.id)
                gone += 1
            except Exception:  # noqa: BLE001 - already gone, or the server is away
                continue
    return gone
