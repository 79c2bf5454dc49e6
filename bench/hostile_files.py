"""How fast hostile files are refused at the door, next to accepting a normal file.

Each file is written to disk and given to ``edgefleet app create --compose FILE`` (run in
this process, in a throw-away home: ``bench/home.py``), the way a new user would; the env-file
cases go through ``env_file_keys``, the function that checks env files. A refusal must come
in one line, before anything is stored, within a second. Times are medians of a few runs in
one process; each row's ratio is to accepting the normal compose file in the same run (this
machine is shared: compare ratios, not absolute times across runs).

    python bench/hostile_files.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.home import throwaway_home  # noqa: E402

GOOD = """\
x-common: &common
  restart: unless-stopped
  labels: {team: shop}
services:
  web:
    <<: *common
    image: 127.0.0.1:5000/edgefleet/hello:1.0.0
    ports: ["8080"]
    environment: [MODE=prod]
    volumes: ["data:/data"]
  worker:
    <<: *common
    image: 127.0.0.1:5000/edgefleet/ticker:1.0.0
volumes:
  data: {}
"""


def billion_laughs() -> str:
    """Nine levels of ten aliases each: 10^9 nodes once expanded, under 1 KB on disk."""
    lines = ['x-lol0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        lines.append(f"x-lol{level}: &l{level} [" + ",".join([f"*l{level - 1}"] * 10) + "]")
    return "\n".join(lines) + "\nservices:\n  web: {image: a, labels: *l9}\n"


def many_services(count: int, image: str = "127.0.0.1:5000/edgefleet/hello:1.0.0") -> str:
    return "services:\n" + "".join(f"  s{i}:\n    image: {image}\n" for i in range(count))


def big_file(size: int) -> str:
    """A plausible compose file of ``size`` bytes: one service, a long environment."""
    head = "services:\n  web:\n    image: 127.0.0.1:5000/edgefleet/hello:1.0.0\n    environment:\n"
    line = "      - VARIABLE_{i:08d}=some-value-of-a-plausible-length\n"
    count = (size - len(head)) // len(line.format(i=0)) + 1
    return head + "".join(line.format(i=i) for i in range(count))


def int_list(tail: str, size: int = 1024 * 1024, count: int | None = None) -> str:
    """A flow list of single-digit ints filling ``size`` bytes (about 500,000 nodes: the
    most a file under the size limit can hold) or of ``count`` ints, then ``tail``."""
    head = "x-junk: ["
    count = count or (size - len(head) - len(tail) - 2) // 2
    return head + ",".join(["1"] * count) + "]\n" + tail


BIG_LIST_TAIL = "services:\n  web: {image: 127.0.0.1:5000/edgefleet/hello:1.0.0}\n"


PRIVILEGED = """\
services:
  web:
    image: 127.0.0.1:5000/edgefleet/hello:1.0.0
    privileged: true
    pid: host
    network_mode: host
    volumes: ["/:/host"]
"""


def compose_cases() -> dict[str, bytes]:
    """Hostile compose files by name (bytes as written to disk)."""
    return {
        "billion laughs (nested aliases)": billion_laughs().encode(),
        "alias cycle": b"x-a: &a [*a]\nservices:\n  web: {image: a}\n",
        "deep nesting (10,000 flow levels)": b"services: " + b"[" * 10_000 + b"]" * 10_000,
        "deep nesting (100 block levels)": ("services:\n" + "".join(
            "  " * i + f"k{i}:\n" for i in range(1, 100)) + "  " * 100 + "x\n").encode(),
        "13 MB compose file": big_file(13 * 1024 * 1024).encode(),
        "201 services": many_services(201).encode(),
        "20,000 services (under 1 MiB)": many_services(20_000, "a").encode(),
        "not UTF-8 (Latin-1)": "services:\n  café: {image: a}\n".encode("latin-1"),
        "duplicate keys": b"services:\n  web: {image: a}\n  web: {image: b}\n",
        "privileged without --allow-privileged": PRIVILEGED.encode(),
        "env_file of the control plane": (
            b"services:\n  web: {image: a, env_file: /etc/shadow}\n"),
        "1 MiB list of ints, duplicate key at the end": int_list(
            BIG_LIST_TAIL + "x-junk: 1\n").encode(),
        "1 MiB list of ints, invalid image": int_list(
            "services:\n  web: {image: 'not an image'}\n").encode(),
        "1 MiB list of ints, otherwise valid": int_list(BIG_LIST_TAIL).encode(),
        # just under EDGEFLEET_MAX_YAML_NODES: the slowest refusal the node limit allows
        "99,990 ints, invalid image": int_list(
            "services:\n  web: {image: 'not an image'}\n", count=99_990).encode(),
    }


def env_cases() -> dict[str, bytes]:
    return {
        "env file of 13 MB": b"".join(b"K%08d=value\n" % i for i in range(1_000_000))[
            : 13 * 1024 * 1024],
        "env file not UTF-8": b"A=caf\xe9\n",
        "env file with a duplicate": b"A=1\nB=2\nA=3\n",
    }


def _median_seconds(action: Callable[[], str], runs: int) -> tuple[float, str]:
    times, outcome = [], ""
    for _ in range(runs):
        started = time.perf_counter()
        outcome = action()
        times.append(time.perf_counter() - started)
    return statistics.median(times), outcome


def _cli(path: Path, name: str, *extra: str) -> Callable[[], str]:
    from typer.testing import CliRunner

    from edgefleet.cli.main import app

    def run() -> str:
        result = CliRunner().invoke(app, ["app", "create", name, "--version", "1.0.0",
                                          "--compose", str(path), *extra])
        if result.exit_code == 0:
            from edgefleet.api.applications import delete_application

            delete_application(name)  # so that the next run creates it again
            return "accepted"
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, result.output
        return lines[0]

    return run


def _env(data: bytes) -> Callable[[], str]:
    from edgefleet.errors import RefusedFile
    from edgefleet.models.documents import env_file_keys

    def run() -> str:
        try:
            return f"accepted ({len(env_file_keys(data))} variables)"
        except RefusedFile as exc:
            return f"error: {exc}"

    return run


def run_benchmark(runs: int = 5) -> list[dict[str, object]]:
    """One row per file: name, bytes, median seconds, outcome (first line of the answer)."""
    rows: list[dict[str, object]] = []
    with throwaway_home("efbench-hostile-") as folder:
        from edgefleet import db
        from edgefleet.settings import get_settings

        get_settings.cache_clear()
        db.get_engine.cache_clear()
        db.get_engine()  # the records exist before timing starts (migrations run once)
        files = {"normal compose file (accepted)": GOOD.encode(),
                 "200 services (accepted, at the limit)": many_services(200).encode(),
                 "1 MiB compose file (accepted, at the limit)": big_file(1024 * 1024 - 100
                                                                          ).encode(),
                 "privileged with --allow-privileged (accepted)": PRIVILEGED.encode(),
                 **compose_cases()}
        for i, (name, data) in enumerate(files.items()):
            path = folder / f"case{i}.yaml"
            path.write_bytes(data)
            extra = ["--allow-privileged"] if "with --allow-privileged" in name else []
            seconds, outcome = _median_seconds(_cli(path, f"bench-{i}", *extra), runs)
            rows.append({"file": name, "bytes": len(data), "seconds": seconds,
                         "outcome": outcome})
        normal_env = b"".join(b"K%03d=value\n" % i for i in range(100))
        for name, data in {"normal env file (accepted)": normal_env, **env_cases()}.items():
            seconds, outcome = _median_seconds(_env(data), runs)
            rows.append({"file": name, "bytes": len(data), "seconds": seconds,
                         "outcome": outcome})
    get_settings.cache_clear()  # the caller's home again
    db.get_engine.cache_clear()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows = run_benchmark(args.runs)
    baseline = float(rows[0]["seconds"])  # type: ignore[arg-type]  # the normal file
    print(f"{'file':48} {'bytes':>10} {'seconds':>8} {'ratio':>7}  answer")
    for row in rows:
        outcome = str(row["outcome"])
        outcome = outcome if len(outcome) <= 100 else outcome[:97] + "..."
        ratio = float(row["seconds"]) / baseline  # type: ignore[arg-type]
        print(f"{row['file']:48} {row['bytes']:>10} {row['seconds']:>8.4f} {ratio:>7.2f}  "
              f"{outcome}")
    print(f"ratio: seconds / those of accepting the normal compose file ({baseline:.4f} s)")


if __name__ == "__main__":
    main()
