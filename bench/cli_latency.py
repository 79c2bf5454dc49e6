"""How fast the `edgefleet` command answers: `--help` and the commands that only read records.

Each command runs as a fresh process (as a user types it), N times; the median is printed
with its ratio to `python -c pass` measured in the same run, because machines here are
shared and noisy: compare ratios, not absolute times (each process's CPU seconds are
printed too; they move less than wall time when other work competes for the cores). A
command PASSes when its median wall time is at most the target (0.5 s); the exit code is 0
either way (this is a benchmark).

Everything runs against a throw-away EDGEFLEET_HOME (and PREFECT_HOME) created here and
removed at the end, seeded with a few edges, applications and deployments through the
Python API without contacting any engine: `~/.edgefleet`, its records and a running lab
are neither read nor changed.

    python bench/cli_latency.py [--runs 7] [--target 0.5] [--only edge,deployments]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Seeds the records in a child process, so this process never imports edgefleet (nothing
# is cached here) and the API sees only the throw-away home. No engine is contacted:
# edges are added with check=False, deployments are created (CREATED), never started.
SEED = """
import json
import edgefleet as ef
for i in range(1, 4):
    ef.add_edge(f"bench-{i}", f"tcp://127.0.0.1:{23750 + i}", check=False)
ef.create_application("hello", "1.0.0", image="127.0.0.1:5000/bench/hello:1.0.0",
                      ports=["8080:80"])
ef.publish_version("hello", "1.0.0")
ef.add_version("hello", "1.1.0", image="127.0.0.1:5000/bench/hello:1.1.0", ports=["8080:80"])
COMPOSE = "services:\\n  web:\\n    image: 127.0.0.1:5000/bench/web:2.0.0\\n"
ef.create_application("web", "2.0.0", compose=COMPOSE)
ef.publish_version("web", "2.0.0")
ids = [ef.create_deployment(app, f"bench-{i}").id
       for i, app in ((1, "hello"), (2, "hello"), (3, "web"))]
print(json.dumps({"deployment": ids[0]}))
"""

# (label, arguments of `edgefleet`, part of the acceptance check)
COMMANDS: list[tuple[str, list[str], bool]] = [
    ("--help", ["--help"], True),
    ("edge list --json", ["edge", "list", "--json"], True),
    ("deployments --json", ["deployments", "--json"], True),
    ("edge list", ["edge", "list"], False),
    ("edge show bench-1 --json", ["edge", "show", "bench-1", "--json"], False),
    ("app list --json", ["app", "list", "--json"], False),
    ("app show hello", ["app", "show", "hello"], False),
    ("deployments", ["deployments"], False),
    ("status ID --json", ["status", "{deployment}", "--json"], False),
    ("status ID", ["status", "{deployment}"], False),
    ("notifications --json", ["notifications", "--json"], False),
    ("telemetry --json", ["telemetry", "--json"], False),
    ("lab status --json", ["lab", "status", "--json"], False),
    ("deploy --help", ["deploy", "--help"], False),
]


def edgefleet_command() -> list[str]:
    """The console script beside this interpreter (what a user runs), else the module."""
    script = Path(sys.executable).with_name("edgefleet")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from edgefleet.cli.main import app; app()"]


def isolated_env(home: Path) -> dict[str, str]:
    """This environment, pointed at the throw-away home only (no database URL or lab dir
    of the user's leaks in)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EDGEFLEET_") and k != "PREFECT_HOME" and k != "PREFECT_API_URL"}
    env["EDGEFLEET_HOME"] = str(home / "edgefleet")
    env["PREFECT_HOME"] = str(home / "prefect")
    env["COLUMNS"] = "120"
    return env


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, timeout=300)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace').strip()[-500:]}")
    return elapsed, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (median)")
    parser.add_argument("--target", type=float, default=0.5, help="seconds a command may take")
    parser.add_argument("--only", default="",
                        help="comma-separated words: time only commands containing one")
    args = parser.parse_args()
    runs = max(1, args.runs)

    home = Path(tempfile.mkdtemp(prefix="edgefleet-cli-bench-"))
    try:
        env = isolated_env(home)
        seeded = subprocess.run([sys.executable, "-c", SEED], env=env, capture_output=True,
                                text=True, timeout=600)
        if seeded.returncode != 0:
            print(f"seeding the records failed:\n{seeded.stderr[-2000:]}", file=sys.stderr)
            return 0
        ids = json.loads(seeded.stdout.strip().splitlines()[-1])
        cli = edgefleet_command()
        words = [w.strip() for w in args.only.split(",") if w.strip()]
        chosen = [c for c in COMMANDS if not words or any(w in c[0] for w in words)]
        baseline_argv = [sys.executable, "-c", "pass"]
        argvs = [(label, cli + [a.format(**ids) for a in argv], gate)
                 for label, argv, gate in chosen]
        # warm the OS file cache (and the records' schema check) before timing anything; a
        # command that fails is reported, not timed
        failed: dict[str, str] = {}
        for label, argv, _gate in argvs:
            try:
                run_once(argv, env)
            except RuntimeError as exc:
                lines = str(exc).strip().splitlines()
                errors = [line for line in lines if "Error" in line or "error:" in line]
                failed[label] = (errors or lines)[-1][:200]
        argvs = [entry for entry in argvs if entry[0] not in failed]
        times: dict[str, list[tuple[float, float]]] = {"python -c pass": []}
        times.update({label: [] for label, _argv, _gate in argvs})
        # interleaved rounds: a burst of load on the shared machine hits every command alike
        for _ in range(runs):
            times["python -c pass"].append(run_once(baseline_argv, env))
            for label, argv, _gate in argvs:
                times[label].append(run_once(argv, env))

        def stats(label: str) -> tuple[float, float, float]:
            """Median wall, fastest wall and median CPU seconds."""
            walls = [w for w, _c in times[label]]
            return (statistics.median(walls), min(walls),
                    statistics.median(c for _w, c in times[label]))

        base, base_min, base_cpu = stats("python -c pass")
        print(f"edgefleet CLI latency: median of {runs} runs, target {args.target:.2f} s "
              f"(wall median; {' '.join(cli)}; load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} CPUs)")
        print(f"{'command':<28} {'median s':>9} {'min s':>7} {'cpu s':>7} {'x pass':>7}  result")
        print(f"{'python -c pass':<28} {base:9.3f} {base_min:7.3f} {base_cpu:7.3f} "
              f"{1.0:7.1f}  (baseline)")
        missed_gate: list[str] = []
        missed: list[str] = []
        for label, _argv, gate in argvs:
            med, fastest, cpu = stats(label)
            ok = med <= args.target
            if not ok:
                (missed_gate if gate else missed).append(label)
            mark = "PASS" if ok else "MISS"
            print(f"{label:<28} {med:9.3f} {fastest:7.3f} {cpu:7.3f} {med / base:7.1f}  "
                  f"{mark}{'  (acceptance)' if gate else ''}")
        for label, reason in failed.items():
            print(f"{label:<28} {'-':>9} {'-':>7} {'-':>7} {'-':>7}  FAILED: {reason}")
        gated = [label for label, _argv, gate in chosen if gate]
        missed_gate += [label for label in failed if label in gated]
        missed += [label for label in failed if label not in gated]
        print()
        if gated:
            print(f"acceptance ({', '.join(gated)} <= {args.target:.2f} s): "
                  + ("PASS" if not missed_gate else f"MISS ({', '.join(missed_gate)})"))
        print(f"other commands: {len(chosen) - len(gated) - len(missed)} of "
              f"{len(chosen) - len(gated)} within target"
              + (f"; over: {', '.join(missed)}" if missed else ""))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
