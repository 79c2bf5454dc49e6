"""Host-level privileges need --allow-privileged; the refusal names each offending key."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgefleet.models.inputs import AppKind, VersionCreate
from edgefleet.models.privileges import control_plane_files, described, host_privileges
from edgefleet.validation import validated

IMAGE = "127.0.0.1:5000/edgefleet/hello:1.0.0"


def found(service: dict[str, object], **top: object) -> list[str]:
    return host_privileges({"services": {"web": {"image": IMAGE, **service}}, **top})


@pytest.mark.parametrize(("service", "expected"), [
    ({"privileged": True}, "services.web.privileged: true"),
    ({"privileged": "${PRIV}"}, "services.web.privileged: ${PRIV}"),
    ({"pid": "host"}, "services.web.pid: host"),
    ({"ipc": "host"}, "services.web.ipc: host"),
    ({"uts": "host"}, "services.web.uts: host"),
    ({"network_mode": "host"}, "services.web.network_mode: host"),
    ({"network_mode": "${MODE:-bridge}"}, "services.web.network_mode: ${MODE:-bridge}"),
    ({"userns_mode": "host"}, "services.web.userns_mode: host"),
    ({"cap_add": ["NET_ADMIN"]}, 'services.web.cap_add: ["NET_ADMIN"]'),
    ({"devices": ["/dev/sda:/dev/sda"]}, 'services.web.devices: ["/dev/sda:/dev/sda"]'),
    ({"device_cgroup_rules": ["c 1:3 mr"]}, "services.web.device_cgroup_rules"),
    ({"security_opt": ["seccomp=unconfined"]}, "services.web.security_opt"),
    ({"volumes": ["/:/host"]}, "services.web.volumes[0]: bind mount of host path /"),
    ({"volumes": ["data:/data", "./conf:/conf:ro"]},
     "services.web.volumes[1]: bind mount of host path ./conf"),
    ({"volumes": ["${DIR}:/d"]}, "services.web.volumes[0]: bind mount of host path ${DIR}"),
    # a ':' inside ${...} is no field separator; a default host path is a bind of that path
    ({"volumes": ["${HOSTPATH:-/}:/host"]},
     "services.web.volumes[0]: bind mount of host path / (the default of ${HOSTPATH:-/})"),
    ({"volumes": ["${DATA:-./d}:/d:ro"]},
     "services.web.volumes[0]: bind mount of host path ./d (the default of ${DATA:-./d})"),
    ({"volumes": [{"type": "bind", "source": "/etc", "target": "/e"}]},
     "services.web.volumes[0]: bind mount of host path /etc"),
    ({"networks": ["host"]}, "services.web.networks: host (the host's network)"),
])
def test_each_privilege_is_named(service: dict[str, object], expected: str) -> None:
    assert any(line.startswith(expected) for line in found(service)), found(service)


def test_top_level_host_paths_are_named() -> None:
    assert found({}, volumes={"v": {"driver_opts": {"type": "none", "o": "bind",
                                                      "device": "/"}}}) == [
        "volumes.v.driver_opts: host path /"]
    assert found({}, secrets={"s": {"file": "./s.txt"}}) == ["secrets.s.file: host file ./s.txt"]
    assert found({"networks": ["outside"]},
                 networks={"outside": {"external": True, "name": "host"}}) == [
        "services.web.networks: outside (the host's network)"]


@pytest.mark.parametrize("service", [
    {"privileged": False}, {"privileged": "false"}, {"network_mode": "bridge"},
    {"network_mode": "service:db"}, {"pid": "container:db"}, {"ipc": "shareable"},
    {"cap_drop": ["ALL"]}, {"security_opt": ["no-new-privileges:true"]},
    {"volumes": ["data:/data", "/anonymous", {"type": "volume", "source": "data",
                                              "target": "/d"}, {"type": "tmpfs",
                                                                "target": "/t"}]},
    {"networks": ["default", "back"]}, {"cap_add": []},
])
def test_ordinary_services_need_no_allowance(service: dict[str, object]) -> None:
    assert found(service) == []


PRIVILEGED = f"""
services:
  web:
    image: {IMAGE}
    privileged: true
    volumes: ["/:/host", "data:/data"]
  db:
    image: {IMAGE}
    cap_add: [SYS_ADMIN]
volumes:
  data: {{}}
"""


def test_refusal_names_every_offending_key_and_how_to_allow() -> None:
    with pytest.raises(ValidationError) as refused:
        VersionCreate(version="1.0.0", kind=AppKind.COMPOSE, compose=PRIVILEGED)
    message = str(refused.value)
    for key in ("services.web.privileged: true", "services.web.volumes[0]: bind mount of "
                "host path /", 'services.db.cap_add: ["SYS_ADMIN"]', "--allow-privileged"):
        assert key in message
    assert "volumes[1]" not in message


def test_the_allowance_records_what_it_allows() -> None:
    spec = VersionCreate(version="1.0.0", kind=AppKind.SWARM, compose=PRIVILEGED,
                         allow_privileged=True)
    assert spec.allow_privileged
    assert spec.privileges == ["services.web.privileged: true",
                               "services.web.volumes[0]: bind mount of host path /",
                               'services.db.cap_add: ["SYS_ADMIN"]']
    plain = VersionCreate(version="1.0.0", kind=AppKind.IMAGE, image=IMAGE,
                          privileges=["forged"])
    assert plain.privileges == []  # found from the file, never taken from the caller


def test_many_offending_keys_stay_one_line() -> None:
    model = {"services": {f"s{i}": {"image": IMAGE, "privileged": True} for i in range(50)}}
    line = described(host_privileges(model))
    assert line.endswith("and 40 more") and "\n" not in line


@pytest.mark.parametrize(("compose", "key"), [
    ("services:\n  web: {image: a, env_file: /etc/shadow}\n",
     "services.web.env_file[0]: /etc/shadow"),
    ("services:\n  web: {image: a, env_file: [{path: ../../x.env}]}\n",
     "services.web.env_file[0]: ../../x.env"),
    ("services:\n  web: {image: a, extends: {file: ~/base.yaml, service: b}}\n",
     "services.web.extends.file: ~/base.yaml"),
    ("include: [/srv/other/compose.yaml]\nservices:\n  web: {image: a}\n",
     "include[0]: /srv/other/compose.yaml"),
    ("services:\n  web: {image: a}\nconfigs:\n  c: {file: /root/.edgefleet/x}\n",
     "configs.c.file: /root/.edgefleet/x"),
])
def test_control_plane_files_are_refused_even_when_allowed(compose: str, key: str) -> None:
    from edgefleet.errors import InvalidInput

    with pytest.raises(InvalidInput, match="reads files of the control plane") as refused:
        validated(VersionCreate, version="1.0.0", kind=AppKind.COMPOSE, compose=compose,
                  allow_privileged=True)
    assert key in str(refused.value)


def test_files_inside_the_deployment_folder_are_no_control_plane_read() -> None:
    model = {"services": {"web": {"image": "a", "env_file": ["app.env", "conf/more.env"]}}}
    assert control_plane_files(model) == []


RESOLVED = {  # `compose config --format json` of a file whose variables made it privileged
    "name": "ef-x",
    "services": {"web": {
        "image": IMAGE, "network_mode": "host",
        "volumes": [{"type": "bind", "source": "/srv/data", "target": "/d",
                     "bind": {"create_host_path": True}},
                    {"type": "volume", "source": "data", "target": "/v", "volume": {}}],
        "devices": [{"source": "/dev/fuse", "target": "/dev/fuse", "permissions": "rwm"}]}},
    "volumes": {"data": {"name": "ef-x_data"}},
}


def test_the_resolved_file_is_checked_again_at_deploy(edgefleet_home: object,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment's environment can turn ``network_mode: ${MODE}`` into ``host``: the
    file compose resolved is checked against the version's allowance before anything runs."""
    from edgefleet.engine import EngineConnection
    from edgefleet.errors import InvalidInput
    from edgefleet.models.plans import DeployPlan
    from edgefleet.tasks import compose
    from edgefleet.tasks.compose import resolve_compose, source_key

    plan = DeployPlan(deployment_id="d" * 32, application="shop", version="1.0.0",
                      kind=AppKind.COMPOSE, project="ef-x", compose="services: {}\n",
                      edge=EngineConnection(name="e", docker_host="tcp://127.0.0.1:1"))
    cached = {(plan.deployment_id, source_key(plan)): RESOLVED}  # as the records keep it
    monkeypatch.setattr(compose, "cached_model", lambda dep, key: cached.get((dep, key)))
    with pytest.raises(InvalidInput) as refused:
        resolve_compose.fn(plan)
    assert ("services.web.network_mode: host; services.web.devices: [{\"source\": "
            in str(refused.value))
    assert "volumes[0]: bind mount of host path /srv/data" in str(refused.value)
    assert "volumes[1]" not in str(refused.value)
    allowed = plan.model_copy(update={"allow_privileged": True})
    assert resolve_compose.fn(allowed) == RESOLVED
