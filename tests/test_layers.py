"""The layers hold at run time too: every module imports alone, pure ones stay light, and the
wheel installs one top-level package.

``lint-imports`` (pyproject ``[tool.importlinter]``) checks the import graph; these tests
check what it cannot see: import cycles that only bite in a fresh interpreter, what a
package ``__init__`` drags in, and what lands in site-packages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import edgefleet

REPO = Path(__file__).resolve().parent.parent
PACKAGE = Path(edgefleet.__file__).parent
# Alembic's scripts: run inside Alembic's context by `edgefleet.db`, never imported alone
# (the wheel test below runs them from the installed package).
ALEMBIC_SCRIPTS = ("edgefleet.migrations.env", "edgefleet.migrations.versions")

# The pure rules and plans (every edgefleet.models module is pure too).
PURE_RULES = ("edgefleet.metrics", "edgefleet.update_plan", "edgefleet.labels",
              "edgefleet.observed", "edgefleet.swarm_tasks", "edgefleet.image_refs",
              "edgefleet.notice_events", "edgefleet.parameters",
              "edgefleet.image_updates", "edgefleet.reconcile_rules",
              "edgefleet.validation", "edgefleet.errors", "edgefleet.settings",
              "edgefleet.url_templates", "edgefleet.bundled_files",
              "edgefleet.version_changes", "edgefleet.selectors",
              "edgefleet.group_plan", "edgefleet.rollouts", "edgefleet.models.groups")


def package_modules() -> list[str]:
    """Every ``edgefleet.*`` module on disk, through the linked models/, tasks/, flows/ and
    deployments/ folders."""
    found = []
    for folder, dirs, files in os.walk(PACKAGE, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        parts = ("edgefleet", *Path(folder).relative_to(PACKAGE).parts)
        for name in sorted(files):
            if name.endswith(".py"):
                module = ".".join(parts if name == "__init__.py" else (*parts, name[:-3]))
                if not module.startswith(ALEMBIC_SCRIPTS):
                    found.append(module)
    return found


def run_python(code: str, *, cwd: Path = REPO, isolated: bool = False
               ) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in a fresh interpreter (``-I``: no PYTHONPATH, no current dir)."""
    flags = ["-I"] if isolated else []
    return subprocess.run([sys.executable, *flags, "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_the_walk_finds_the_linked_layers() -> None:
    modules = package_modules()
    for expected in ("edgefleet.cli.main", "edgefleet.api.deployments", "edgefleet.models.plans",
                     "edgefleet.tasks.records", "edgefleet.flows.deploy",
                     "edgefleet.deployments.work_pool", "edgefleet.workers",
                     "edgefleet.lab.engines"):
        assert expected in modules


# Third-party packages imported once before the forks below: they never import edgefleet,
# so loading them first cannot hide a cycle among edgefleet's own modules.
THIRD_PARTY = ("prefect", "prefect.flows", "prefect.tasks", "docker", "sqlmodel", "httpx",
               "typer", "rich", "alembic", "pydantic", "yaml", "semver")

FORKED_IMPORTS = """
import importlib, json, os, sys
for name in THIRD_PARTY:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
assert not any(m == "edgefleet" or m.startswith("edgefleet.") for m in sys.modules)
failed = {}
for module in MODULES:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a child with no edgefleet module loaded yet
        os.close(read)
        try:
            importlib.import_module(module)
            code = 0
        except BaseException as exc:
            os.write(write, f"{type(exc).__name__}: {exc}".encode()[:4000])
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        words = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failed[module] = words or f"exit status {status}"
print(json.dumps(failed))
"""


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    """Each module is imported first in a process of its own (a fork of one fresh interpreter
    that holds only the third-party packages): an import cycle among our modules fails it."""
    modules = package_modules()
    code = (f"THIRD_PARTY = {list(THIRD_PARTY)!r}\nMODULES = {modules!r}\n" + FORKED_IMPORTS)
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    failed = json.loads(result.stdout.strip().splitlines()[-1])
    assert failed == {}


def heavy_imports(modules: tuple[str, ...], banned: set[str]) -> dict[str, list[str]]:
    """Import ``modules`` one after the other in one fresh interpreter; for each, the banned
    top-level packages its import loaded (the first module that pulls one in is named)."""
    code = ("import importlib, json, sys\n"
            "found = {}\n"
            f"for name in {list(modules)!r}:\n"
            "    before = set(sys.modules)\n"
            "    importlib.import_module(name)\n"
            "    found[name] = sorted({m.split('.')[0] for m in set(sys.modules) - before}\n"
            f"                         & set({sorted(banned)!r}))\n"
            "print(json.dumps(found))")
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    loaded: dict[str, list[str]] = json.loads(result.stdout)
    return loaded


def test_pure_modules_import_neither_prefect_nor_docker() -> None:
    """The rules not even SQLModel: their models are the pydantic ones, not the tables."""
    banned = {"prefect", "docker", "requests", "httpx"}
    models = tuple(m for m in package_modules() if m.startswith("edgefleet.models."))
    assert "edgefleet.models.plans" in models
    assert heavy_imports(models, banned) == {m: [] for m in models}
    banned |= {"sqlmodel", "sqlalchemy", "alembic"}
    assert heavy_imports(PURE_RULES, banned) == {m: [] for m in PURE_RULES}


def test_the_public_api_is_loaded_on_first_use() -> None:
    result = run_python("import sys, edgefleet; before = 'edgefleet.api.edges' in sys.modules; "
                        "f = edgefleet.add_edge; print(before, f.__module__, 'add_edge' in "
                        "dir(edgefleet), 'prefect' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "edgefleet.api.edges", "True", "False"]
    assert set(edgefleet._API) == set(edgefleet.__all__)
    for name in edgefleet.__all__:
        assert callable(getattr(edgefleet, name)), name
    with pytest.raises(AttributeError):
        edgefleet.no_such_thing  # noqa: B018


@pytest.mark.slow
def test_the_wheel_installs_only_the_edgefleet_package(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("edgefleet", "models", "tasks", "flows", "deployments"):
        shutil.copytree(REPO / name, source / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)], check=True,
                   timeout=600)
    (wheel,) = wheels.glob("edgefleet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"edgefleet"}
    assert "edgefleet/models/states.py" in names and "edgefleet/tasks/records.py" in names

    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, timeout=600)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    prefix = f"import sys; sys.path.insert(0, {str(target)!r}); "
    for generic in ("models", "tasks", "flows", "deployments"):
        result = run_python(prefix + f"import {generic}", cwd=outside, isolated=True)
        assert "ModuleNotFoundError" in result.stderr, (generic, result.stdout, result.stderr)
    # The installed package works: its modules, and its migrations (Alembic's env.py imports
    # the tables) on a new database.
    result = run_python(
        prefix + "import edgefleet.models.states as s; from edgefleet.db import get_engine; "
                 f"get_engine('sqlite:///{tmp_path / 'records.db'}'); print(s.__file__)",
        cwd=outside, isolated=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(target))
