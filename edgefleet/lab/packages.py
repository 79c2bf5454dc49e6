"""Debian packages the lab runs on: installed with apt when missing, never assumed."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from edgefleet.errors import LabError

# package -> files that must exist once it is installed
REQUIRED: dict[str, tuple[str, ...]] = {
    "docker.io": ("/usr/sbin/dockerd",),
    "docker-registry": ("/usr/bin/docker-registry",),
    "busybox-static": ("/bin/busybox",),
}
APT_UPDATE_TIMEOUT = 300.0
APT_INSTALL_TIMEOUT = 900.0
POLICY_RC = Path("/usr/sbin/policy-rc.d")


def package_installed(name: str) -> bool:
    """True when dpkg reports the package ``install ok installed``."""
    if shutil.which("dpkg-query") is None:
        return False
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", name],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == "install ok installed"


def missing_packages() -> list[str]:
    return [
        name for name, files in REQUIRED.items()
        if not package_installed(name) or not all(Path(f).exists() for f in files)
    ]


def ensure_packages(progress: Callable[[str], None]) -> None:
    """Install what is missing with ``apt-get``; a clear error where that cannot work."""
    missing = missing_packages()
    if not missing:
        return
    names = " ".join(missing)
    if shutil.which("apt-get") is None:
        raise LabError(
            f"the lab needs the Debian packages {names}, and apt-get is not available here: "
            "run the lab on Debian/Ubuntu, or install them by other means"
        )
    if os.geteuid() != 0:
        raise LabError(
            f"the lab needs the Debian packages {names}: run as root, or install them first "
            f"(sudo apt-get install -y {names})"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    progress(f"installing Debian packages: {names}")
    _apt(["apt-get", "update"], env, APT_UPDATE_TIMEOUT)
    # Without systemd (containers, CI sandboxes) the packages' init scripts would start a
    # system dockerd and registry that the lab does not want: keep them off while installing.
    guard = not Path("/run/systemd/system").is_dir() and not POLICY_RC.exists()
    if guard:
        POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC.chmod(0o755)
    try:
        _apt(
            ["apt-get", "install", "-y", "--no-install-recommends", *missing],
            env, APT_INSTALL_TIMEOUT,
        )
    finally:
        if guard:
            POLICY_RC.unlink(missing_ok=True)
    still = missing_packages()
    if still:
        raise LabError(f"apt-get finished but {' '.join(still)} is still missing; install by hand")


def _apt(cmd: list[str], env: dict[str, str], timeout: float) -> None:
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(cmd)}` took longer than {timeout:.0f} s; retry") from exc
    if out.returncode != 0:
        tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-5:])
        raise LabError(f"`{' '.join(cmd)}` failed (exit {out.returncode}):\n{tail}")
