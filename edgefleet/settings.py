"""Settings read from the environment (prefix ``EDGEFLEET_``), so one process tree shares them."""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEFLEET_", extra="ignore")

    home: Path = Field(default=Path.home() / ".edgefleet", description="where state lives")
    database_url: str = Field(default="", description="SQLAlchemy URL; default SQLite in home")
    lab_dir: Path | None = Field(default=None, description="lab state; default <home>/lab")
    engine_timeout: float = Field(default=30.0, gt=0, description="seconds per Docker API call")
    deploy_timeout: float = Field(default=120.0, gt=0, description="seconds to reach STARTED")
    pull_timeout: float = Field(default=600.0, gt=0, description="seconds for one image pull")
    compose_binary: str = Field(default="", description="docker-compose binary; found if empty")
    prefect_port: int = Field(default=4200, gt=0, lt=65536)
    prefect_host: IPv4Address | IPv6Address = Field(
        default=IPv4Address("127.0.0.1"),
        description="address the Prefect server `edgefleet up` starts listens on; 0.0.0.0 "
        "(or this machine's VPN address) lets workers on other machines reach it")
    prefect_database_url: str = Field(
        default="", description="the database of the Prefect server `edgefleet up` starts; "
                                "default: <records database>_prefect beside PostgreSQL records, "
                                "else Prefect's own SQLite")
    run_mode: Literal["auto", "local", "served"] = Field(
        default="auto", description="auto: served flow runs while `edgefleet up` runs")
    soak_seconds: float = Field(default=30.0, ge=0, description="watch updated containers")
    update_lock_wait: float = Field(default=600.0, gt=0, description="wait for another update")
    pull_policy: Literal["missing", "always"] = Field(
        default="missing", description="deploy: pull only images the edge lacks, or always")
    log_lines: int = Field(default=200, gt=0, description="log lines per service per fetch")
    image_check_seconds: int = Field(default=300, gt=0,
                                     description="cadence of the served image-update check")
    reconcile_seconds: int = Field(default=60, gt=0,
                                   description="cadence of the notification reconcile")
    auto_update_seconds: int = Field(
        default=60, gt=0, description="cadence of the served auto-update check of the groups "
        "(it also runs on each publish event)")
    stuck_check_seconds: int = Field(
        default=60, gt=0, description="cadence of the served reconcile of deployments whose "
        "run died (also run once each time `edgefleet up` starts workers)")
    stuck_margin: float = Field(
        default=300.0, ge=0, description="seconds beyond 2 x deploy timeout + soak a "
        "deployment may stay transient while its run shows no sign of life")
    group_reconcile_seconds: int = Field(
        default=60, gt=0, description="cadence of the served reconcile of deployment groups: "
        "edges that start to match join, members deferred while their edge was away are "
        "updated (also run for one edge each time that edge comes back ONLINE)")
    cleanup_seconds: int = Field(
        default=3600, gt=0, description="cadence of the served clean-up of every ONLINE edge "
        "(it also runs for one edge each time that edge comes back ONLINE)")
    run_heartbeat_seconds: int = Field(
        default=30, ge=30, description="heartbeat of served flow runs; three missed mean "
        "the run's process is gone")
    gate_timeout: int = Field(
        default=86400, gt=0, description="seconds a group's rollout waits at an approval gate "
        "(or paused by an operator) before it halts; the paused run holds its process")
    telemetry_sweep_seconds: int = Field(
        default=60, gt=0, description="cadence of the served collect-telemetry sweep (a "
        "process per run, sweeping for the whole interval); each edge's own intervals decide "
        "whether it is due")
    telemetry_timeout: float = Field(default=10.0, gt=0,
                                     description="seconds per Docker API call in a sweep")
    telemetry_batch_size: int = Field(default=50, gt=0, description="edges per sweep task run")
    telemetry_max_batches: int = Field(
        default=8, gt=0, description="at most this many read tasks per sweep (batches grow)")
    telemetry_in_flight: int = Field(
        default=1024, gt=0, description="edges read at once by a sweep (one event loop, a "
        "connection each; a sample waits about 1 s per running container for dockerd's stats)")
    telemetry_disk_seconds: int = Field(
        default=600, ge=0, description="disk use (`system df`, costly on the engine) is read "
        "this often per edge (and on a forced sweep, or when containers came or went); "
        "samples in between repeat the last figures. Edges due together are spread over "
        "a few sweeps (a sweep reads at most twice its share)")
    telemetry_raw_days: float = Field(default=7, gt=0,
                                      description="raw samples kept, then hourly averages")
    telemetry_delete_after_days: float = Field(
        default=365, gt=0, description="hourly averages and availability history deleted after")
    max_file_bytes: int = Field(default=1024 * 1024, gt=0,
                                description="largest compose, stack or env file accepted")
    max_yaml_depth: int = Field(default=32, gt=0, description="deepest nesting in a YAML file")
    max_yaml_nodes: int = Field(
        default=100_000, gt=0, description="nodes (scalars, lists, mappings) in a YAML file: "
        "a 1 MiB compose file of long lines has about 20,000, one of '1,' half a million, "
        "seconds of work to build")
    yaml_alias_budget: int = Field(
        default=10_000, ge=0, description="nodes that YAML aliases may add once expanded "
        "(a 'billion laughs' file expands to 10^9)")
    max_services: int = Field(default=200, gt=0, description="services in a compose/stack file")
    max_env_entries: int = Field(default=10_000, gt=0, description="variables in an env file")
    max_bundled_file_bytes: int = Field(default=256 * 1024, gt=0,
                                        description="largest file bundled with a version (--file)")
    max_bundled_bytes: int = Field(default=1024 * 1024, gt=0,
                                   description="all files bundled with one version together")
    max_bundled_files: int = Field(default=32, ge=0, description="files bundled with a version")
    fleet_artifact_rows: int = Field(default=500, gt=0,
                                     description="edges in the fleet-status artifact (worst first)")

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'edgefleet.db'}"
        for bare in ("postgresql://", "postgres://"):  # the driver edgefleet[postgres] brings
            if self.database_url.startswith(bare):
                self.database_url = "postgresql+psycopg://" + self.database_url[len(bare):]
        if self.lab_dir is None:
            self.lab_dir = self.home / "lab"
        return self

    @property
    def lab_path(self) -> Path:
        assert self.lab_dir is not None
        return self.lab_dir


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
