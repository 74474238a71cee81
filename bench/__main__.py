"""bench/run [--smoke] [--profile] [--runs N] [p1 p2 p3 p4 p5 memory ...]: run the benchmarks, print the table.

Without names every benchmark runs. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import version

from . import common as c
from .loadgen import have_wrk

ALL = ["p1", "p2", "p3", "p4", "p5", "memory"]


@dataclass
class Config:
    smoke: bool = False
    runs: int = 3
    extras: bool = True
    profile: bool = False
    seed_n: int = 100_000
    p1_n: int = 300
    p2_ks: list = field(default_factory=lambda: [4, 8])
    p2_n: int | None = None  # default: p2_per_k * K
    p2_per_k: int = 25
    p2_seconds: float = 1.0
    http_duration: float = 5.0
    http_conns: int = 16
    p4_conns: int = 50
    p4_rate: float = 20.0
    p4_paced: int = 150
    p4_burst: int = 1000
    p4_senders: int = 4
    p5_duration: float = 4.0
    mem_sockets: int = 500
    worker_rss: tuple | None = None  # filled by P1 for the memory rows

    @classmethod
    def smoke_config(cls) -> "Config":
        return cls(smoke=True, runs=1, extras=False, seed_n=1000, p1_n=10, p2_ks=[2], p2_per_k=1, p2_seconds=0.2,
                   http_duration=1.0, http_conns=4, p4_conns=5, p4_paced=10, p4_rate=20.0, p4_burst=50,
                   p4_senders=1, p5_duration=1.0, mem_sockets=20)


def code_version() -> str:
    """The commit measured, and whether the application's files differ from it."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=c.ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "tasks", "taskrunner_project", "templates", "static"],
                               cwd=c.ROOT, capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head or 'unknown'}" + (f" + {len(dirty)} uncommitted app files" if dirty else "")


def versions() -> str:
    names = ["django", "djangorestframework", "channels", "channels-redis", "daphne", "rq", "django-rq", "redis",
             "psycopg", "gunicorn"]
    return ", ".join(f"{n} {version(n)}" for n in names) + f", python {platform.python_version()}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run, of {' '.join(ALL)} (default: all)")
    parser.add_argument("--smoke", action="store_true", help="each benchmark once, tiny sizes, no speed claims")
    parser.add_argument("--profile", action="store_true", help="P1: also profile the workers (py-spy, pyinstrument)")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3)")
    parser.add_argument("--seed", type=int, help="seeded tasks (default 100000)")
    parser.add_argument("--p1-n", type=int)
    parser.add_argument("--p2-n", type=int, help="P2 tasks for every K (default 25 x K; the issue's size is 10000)")
    parser.add_argument("--p2-k", type=str, help="comma-separated worker counts (default 4,8)")
    parser.add_argument("--no-extras", action="store_true", help="skip the informational extra rows")
    args = parser.parse_args(argv)
    cfg = Config.smoke_config() if args.smoke else Config()
    if args.runs:
        cfg.runs = args.runs
    if args.seed:
        cfg.seed_n = args.seed
    if args.p1_n:
        cfg.p1_n = args.p1_n
    if args.p2_n:
        cfg.p2_n = args.p2_n
    if args.p2_k:
        cfg.p2_ks = [int(k) for k in args.p2_k.split(",")]
    if args.no_extras:
        cfg.extras = False
    cfg.profile = args.profile
    names = args.names or ALL
    unknown = [n for n in names if n not in ALL]
    if unknown:
        parser.error(f"unknown benchmark {' '.join(unknown)}; choose from {' '.join(ALL)}")
    c.install_cleanup()
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"bench {'smoke ' if cfg.smoke else ''}{' '.join(names)} at {started:%Y-%m-%d %H:%M} UTC; {c.machine()}",
          flush=True)
    print(f"versions: {versions()}", flush=True)
    print(f"database {c.BENCH_DB} (+ {c.BASE_DB}), redis {c.REDIS_URL}, channel prefix {c.PREFIX}; "
          f"load generator {'wrk' if have_wrk() else 'python'}", flush=True)
    from . import stack

    c.RESULTS.mkdir(parents=True, exist_ok=True)
    for old in c.RESULTS.glob("*.log"):
        old.unlink()
    t0 = time.perf_counter()
    stack.prepare()
    users = stack.Users()
    stack.seed(users, cfg.seed_n)
    stack.reset_work()
    report = c.Report()
    from django.db import DatabaseError

    from . import memory, p1, p2, p3, p4, p5

    modules = {"p1": p1, "p2": p2, "p3": p3, "p4": p4, "p5": p5, "memory": memory}
    failed = []
    loads = []
    try:
        for name in names:
            t = time.perf_counter()
            try:
                modules[name].run(report, cfg, users)
            except (RuntimeError, AssertionError, OSError, ValueError, KeyError, DatabaseError) as exc:
                failed.append(name)
                print(f"  {name} FAILED: {exc!r}", flush=True)
                report.notes.append(f"{name} failed: {exc!r}")
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            loads.append(f"{name} {load}")
            print(f"  ({name}: {time.perf_counter() - t:.0f} s; load average {load})", flush=True)
        if cfg.profile:
            from . import profile

            profile.run(report, cfg, users)
    finally:
        stack.servers.stop()
        c.stop_all()
        try:
            stack.reset_work()
        except DatabaseError as exc:
            print(f"cleanup: {exc!r}", flush=True)
    elapsed = time.perf_counter() - t0
    text = "\n".join([
        f"## Results {started:%Y-%m-%d %H:%M} UTC ({elapsed:.0f} s{', smoke' if cfg.smoke else ''}, "
        f"{cfg.runs} run{'s' if cfg.runs > 1 else ''} per figure); {c.machine()}",
        f"code {code_version()}; versions: {versions()}; load generator {'wrk' if have_wrk() else 'python'}",
        "", report.table(), "", *[f"- {note}" for note in report.notes],
        f"- load average (1/5/15 min) after each benchmark: {'; '.join(loads)}"])
    print()
    print(text)
    (c.RESULTS / ("latest-smoke.md" if cfg.smoke else "latest.md")).write_text(text + "\n")
    print(f"results and logs in {c.RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
