"""Observe → pure plan → execute: what an update must do to each service, with its cause.

Running services are rebuilt from their labels (config hash, image digest); desired ones are
hashed from the target spec and the digests just pulled. Only a changed hash or digest means
recreate: never a tag alone.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from edgefleet import labels as L
from edgefleet.models.plans import DeployPlan, ObservedContainer

ActionName = Literal["create", "recreate", "keep", "remove"]


class RunningService(BaseModel):
    service: str
    container_id: str
    config_hash: str | None
    digest: str | None
    version: str | None


class DesiredService(BaseModel):
    service: str
    config_hash: str
    digest: str | None
    image: str


class Operation(BaseModel):
    service: str
    action: ActionName
    cause: str
    container_before: str | None = None
    digest_before: str | None = None
    digest_after: str | None = None
    version_before: str | None = None

    @property
    def changes(self) -> bool:
        return self.action != "keep"


def running_services(observed: list[ObservedContainer]) -> dict[str, RunningService]:
    return {
        o.service: RunningService(
            service=o.service, container_id=o.container_id,
            config_hash=o.labels.get(L.CONFIG_HASH), digest=o.labels.get(L.IMAGE_DIGEST),
            version=o.labels.get(L.VERSION),
        )
        for o in observed
    }


def short(digest: str | None) -> str:
    return digest.removeprefix("sha256:")[:12] if digest else "none"


def plan_update(running: dict[str, RunningService], desired: dict[str, DesiredService]
                ) -> list[Operation]:
    """One operation per service, sorted by name; pure, so it is tested by its text."""
    ops: list[Operation] = []
    for name in sorted(set(running) | set(desired)):
        have, want = running.get(name), desired.get(name)
        if want is None:
            assert have is not None
            ops.append(Operation(service=name, action="remove", cause="not in the new version",
                                 container_before=have.container_id,
                                 digest_before=have.digest, version_before=have.version))
            continue
        if have is None:
            ops.append(Operation(service=name, action="create", cause="new service",
                                 digest_after=want.digest))
            continue
        base = {"service": name, "container_before": have.container_id,
                "digest_before": have.digest, "digest_after": want.digest,
                "version_before": have.version}
        if have.digest != want.digest:
            ops.append(Operation(**base, action="recreate",
                                 cause=f"image {short(have.digest)} -> {short(want.digest)}"))
        elif have.config_hash != want.config_hash:
            ops.append(Operation(**base, action="recreate", cause="configuration changed"))
        else:
            ops.append(Operation(**base, action="keep", cause="unchanged"))
    return ops


def render(ops: list[Operation]) -> str:
    """The plan as text, one line per service (used in logs and tests)."""
    return "\n".join(f"{op.action:<8} {op.service}: {op.cause}" for op in ops)


def kept_versions(ops: list[Operation]) -> dict[str, str]:
    """Services left alone keep the version label they were created with."""
    return {op.service: op.version_before for op in ops
            if op.action == "keep" and op.version_before}


def desired_services(plan: DeployPlan, model: dict[str, Any] | None,
                     digests: dict[str, str | None]) -> dict[str, DesiredService]:
    """What the target version wants per service: spec hash and the digest just pulled."""
    if model is None:
        assert plan.image is not None
        return {plan.application: DesiredService(
            service=plan.application, config_hash=L.config_hash(plan.image_spec()),
            digest=digests.get(plan.image), image=plan.image)}
    return {
        name: DesiredService(service=name, config_hash=L.config_hash(L.hashed_spec(model, name)),
                             digest=digests.get(str(spec["image"])), image=str(spec["image"]))
        for name, spec in model["services"].items()
    }
