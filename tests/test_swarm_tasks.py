"""Which swarm containers stand for a service now: pure, from task objects as the API gives."""

from __future__ import annotations

from typing import Any

from edgefleet.swarm_tasks import current_tasks, moment, waiting_reasons

HASH = "io.edgefleet.config-hash"


def service(image: str, config: str, since: str | None = None) -> dict[str, Any]:
    svc: dict[str, Any] = {
        "ID": "svc1", "CreatedAt": "2026-12-02T10:00:00.1Z",
        "Spec": {"TaskTemplate": {"ContainerSpec": {"Image": image,
                                                    "Labels": {HASH: config}}}},
    }
    if since:
        svc["UpdateStatus"] = {"State": "completed", "StartedAt": since}
    return svc


def task(created: str, image: str, config: str, state: str, desired: str,
         container: str | None, slot: int = 1) -> dict[str, Any]:
    status: dict[str, Any] = {"State": state}
    if container:
        status["ContainerStatus"] = {"ContainerID": container}
    return {"ServiceID": "svc1", "Slot": slot, "CreatedAt": created, "DesiredState": desired,
            "Status": status,
            "Spec": {"ContainerSpec": {"Image": image, "Labels": {HASH: config}}}}


def test_a_task_swarm_shut_down_for_an_update_is_history_not_a_crash() -> None:
    tasks = [task("2026-12-02T10:00:01Z", "hello:1.0.0@a", "h1", "shutdown", "shutdown", "old"),
             task("2026-12-02T10:05:01Z", "hello:1.1.0@b", "h2", "running", "running", "new")]
    found = current_tasks([service("hello:1.1.0@b", "h2", "2026-12-02T10:05:00Z")], tasks, HASH)
    assert list(found) == ["new"]
    assert found["new"].restarts == 0


def test_while_the_new_spec_has_no_container_the_slot_is_not_shown() -> None:
    tasks = [task("2026-12-02T10:00:01Z", "hello:1.0.0@a", "h1", "running", "shutdown", "old"),
             task("2026-12-02T10:05:01Z", "hello:1.1.0@b", "h2", "pending", "running", None)]
    assert current_tasks([service("hello:1.1.0@b", "h2", "2026-12-02T10:05:00Z")],
                         tasks, HASH) == {}


def test_a_crash_of_the_current_spec_stands_for_the_slot_until_its_replacement_runs() -> None:
    svc = service("hello:2.0.0@c", "h3", "2026-12-02T10:05:00Z")
    crashed = task("2026-12-02T10:05:01Z", "hello:2.0.0@c", "h3", "failed", "shutdown", "c1")
    waiting = task("2026-12-02T10:05:03Z", "hello:2.0.0@c", "h3", "ready", "running", None)
    found = current_tasks([svc], [crashed, waiting], HASH)
    assert list(found) == ["c1"] and found["c1"].state == "failed"
    running = task("2026-12-02T10:05:03Z", "hello:2.0.0@c", "h3", "running", "running", "c2")
    found = current_tasks([svc], [crashed, running], HASH)
    assert list(found) == ["c2"] and found["c2"].restarts == 1


def test_an_exit_zero_of_a_long_running_service_counts_as_a_restart() -> None:
    svc = service("hello:2.0.0@c", "h3")
    tasks = [task("2026-12-02T10:05:01Z", "hello:2.0.0@c", "h3", "complete", "shutdown", "c1"),
             task("2026-12-02T10:05:09Z", "hello:2.0.0@c", "h3", "running", "running", "c2")]
    assert current_tasks([svc], tasks, HASH)["c2"].restarts == 1


def test_after_a_rollback_the_failures_of_an_earlier_incarnation_do_not_count() -> None:
    """1.1.0 ran (and once crashed) before the update to 2.0.0; the rollback re-applies it."""
    svc = service("hello:1.1.0@b", "h2", since="2026-12-02T11:00:00Z")
    tasks = [
        task("2026-12-02T10:00:01Z", "hello:1.1.0@b", "h2", "failed", "shutdown", "b0"),
        task("2026-12-02T10:00:09Z", "hello:1.1.0@b", "h2", "shutdown", "shutdown", "b1"),
        task("2026-12-02T10:30:01Z", "hello:2.0.0@c", "h3", "failed", "shutdown", "c1"),
        task("2026-12-02T11:00:01Z", "hello:1.1.0@b", "h2", "running", "running", "b2"),
    ]
    found = current_tasks([svc], tasks, HASH)
    assert list(found) == ["b2"] and found["b2"].restarts == 0


def test_a_moved_digest_under_the_same_config_is_a_new_spec() -> None:
    """A forced update after a tag moved changes only the pinned image."""
    svc = service("hello:t@new", "h1", "2026-12-02T10:05:00Z")
    tasks = [task("2026-12-02T10:00:01Z", "hello:t@old", "h1", "running", "shutdown", "old"),
             task("2026-12-02T10:05:01Z", "hello:t@new", "h1", "starting", "running", None)]
    assert current_tasks([svc], tasks, HASH) == {}


def test_an_unchanged_service_keeps_its_task_from_before_the_last_deploy() -> None:
    svc = service("ticker@d", "h9")
    tasks = [task("2026-12-02T10:00:01Z", "ticker@d", "h9", "running", "running", "w1")]
    assert list(current_tasks([svc], tasks, HASH)) == ["w1"]


def test_slots_are_judged_apart() -> None:
    svc = service("hello@b", "h2")
    tasks = [task("2026-12-02T10:00:01Z", "hello@b", "h2", "running", "running", "s1", slot=1),
             task("2026-12-02T10:00:02Z", "hello@b", "h2", "running", "running", "s2", slot=2)]
    assert sorted(current_tasks([svc], tasks, HASH)) == ["s1", "s2"]


def test_engine_times_compare_in_time_order_whatever_their_precision() -> None:
    assert moment("2026-12-02T10:00:00Z") < moment("2026-12-02T10:00:00.1Z")
    assert moment("2026-12-02T10:00:00.5Z") > moment("2026-12-02T10:00:00.49Z")
    assert moment("2026-12-02T10:00:00.50Z") == moment("2026-12-02T10:00:00.5Z")


def test_a_service_swarm_cannot_schedule_is_named_with_swarm_s_reason() -> None:
    svc = service("hello:1.0.0@a", "h1")
    svc["Spec"].update(Name="ef-abc_web", Labels={"com.docker.stack.namespace": "ef-abc"})
    pending = task("2026-12-02T10:00:01Z", "hello:1.0.0@a", "h1", "pending", "running", None)
    pending["Status"].update(Message="pending task scheduling",
                             Err="no suitable node (host-mode port already in use on 1 node)")
    assert waiting_reasons([svc], [pending], HASH) == [
        "service web is pending: no suitable node (host-mode port already in use on 1 node)"]
    # an older spec's rejection is history; a running container of the current spec is fine
    old = task("2026-12-02T09:00:01Z", "hello:0.9.0@z", "h0", "rejected", "shutdown", None)
    old["Status"]["Err"] = "No such image: hello:0.9.0"
    running = task("2026-12-02T10:00:02Z", "hello:1.0.0@a", "h1", "running", "running", "c1")
    assert waiting_reasons([svc], [old, pending, running], HASH) == []
    assert waiting_reasons([svc], [old], HASH) == []
