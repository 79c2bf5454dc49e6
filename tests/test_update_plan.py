"""The update planner, compared as rendered text (no engine needed)."""

from edgefleet import labels as L
from edgefleet.models.plans import ObservedContainer
from edgefleet.update_plan import (
    DesiredService,
    RunningService,
    kept_versions,
    plan_update,
    render,
    running_services,
)

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def running(name: str, digest: str, config: str = "h1", version: str = "1.0.0") -> RunningService:
    return RunningService(service=name, container_id=f"c-{name}", config_hash=config,
                          digest=digest, version=version)


def desired(name: str, digest: str, config: str = "h1") -> DesiredService:
    return DesiredService(service=name, config_hash=config, digest=digest, image=f"r/{name}:x")


def test_only_changed_services_are_recreated() -> None:
    ops = plan_update(
        {"web": running("web", A), "worker": running("worker", A), "old": running("old", A)},
        {"web": desired("web", B), "worker": desired("worker", A), "new": desired("new", A)},
    )
    assert render(ops) == "\n".join([
        "create   new: new service",
        "remove   old: not in the new version",
        "recreate web: image aaaaaaaaaaaa -> bbbbbbbbbbbb",
        "keep     worker: unchanged",
    ])
    assert kept_versions(ops) == {"worker": "1.0.0"}


def test_config_change_with_same_digest_recreates() -> None:
    ops = plan_update({"web": running("web", A, "h1")}, {"web": desired("web", A, "h2")})
    assert render(ops) == "recreate web: configuration changed"


def test_same_tag_different_digest_recreates_same_digest_keeps() -> None:
    assert render(plan_update({"w": running("w", A)}, {"w": desired("w", A)})) == \
        "keep     w: unchanged"
    assert render(plan_update({"w": running("w", A)}, {"w": desired("w", B)})).startswith(
        "recreate w: image")


def test_running_services_are_rebuilt_from_labels() -> None:
    obs = ObservedContainer(
        service="web", container_id="abc", name="ef-1-web", image="r/web:1", state="running",
        labels={L.CONFIG_HASH: "h9", L.IMAGE_DIGEST: A, L.VERSION: "1.2.3"},
    )
    assert running_services([obs])["web"] == RunningService(
        service="web", container_id="abc", config_hash="h9", digest=A, version="1.2.3")


def test_urls_come_from_the_ipv4_binding() -> None:
    from edgefleet.observed import to_observed

    attrs = {"Id": "f" * 64, "Name": "/ef-1-web", "State": {"Status": "running"},
             "Config": {"Image": "r/web:1", "Labels": {}},
             "NetworkSettings": {"Ports": {"8080/tcp": [
                 {"HostIp": "0.0.0.0", "HostPort": "32770"},
                 {"HostIp": "::", "HostPort": "32771"}], "9090/tcp": None}}}
    obs = to_observed(attrs, "10.0.0.7")
    assert obs.ports == ["32770:8080/tcp"]
    assert obs.urls == ["http://10.0.0.7:32770"]
