"""P1 profile (`bench/run p1 --profile`): where a zero-duration task's time goes.

1. py-spy on the real worker processes of one P1 run (`rqworker-pool --num-workers 2`, TaskWorker): two recordings
   at once, non-blocking, 250 Hz: `--idle` (wall time, main thread: what one task waits on) and on-CPU (all threads:
   what burns the cores). Collapsed stacks in bench/results/p1-pyspy-{wall,cpu}-<pid>.txt; summarised here as the
   share of samples whose stack contains a function (inclusive) and the share where it is the leaf (self).
2. pyinstrument, in this process: tasks.jobs.run_attempt called directly (no RQ) on tasks made by the services;
   the full tree in bench/results/p1-pyinstrument.txt.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter

from . import common as c
from . import stack
from .common import BIN, Row

FRAME = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")
# Frames every sample has (process start-up, the pool, the management command): left out of the inclusive lists.
NOISE = ("multiprocessing/", "manage.py", "django/core/management", "django_rq/management", "rq/worker_pool.py",
         "thread (", "BaseWorker.work (", "_bootstrap")


def _short(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    func, path = m.groups()
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{func} ({path})"


def summarise(paths, only_containing: str | None = None, top: int = 25) -> tuple[int, list, list]:
    inclusive, leaf, total = Counter(), Counter(), 0
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack_text, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            if only_containing and only_containing not in stack_text:
                continue
            n = int(count)
            frames = [_short(f) for f in stack_text.split(";") if f]
            total += n
            for name in set(frames):
                if not any(noise in name for noise in NOISE):
                    inclusive[name] += n
            if frames:
                leaf[frames[-1]] += n
    return total, inclusive.most_common(top), leaf.most_common(top)


def pyspy_run(cfg, users) -> dict:
    from .p1 import ours_run

    recorders = []

    def attach(pool):
        deadline = time.monotonic() + 30
        while len(c.children(pool.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in c.children(pool.pid):
            for kind, extra in (("wall", ["--idle"]), ("cpu", [])):
                out = c.RESULTS / f"p1-pyspy-{kind}-{pid}.txt"
                recorders.append((kind, out, subprocess.Popen(
                    [str(BIN / "py-spy"), "record", "--pid", str(pid), "--rate", "250", "--nonblocking", "--threads",
                     "--format", "raw", "-o", str(out), *extra], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)))

    result = ours_run(max(cfg.p1_n, 200), stack.servers.port("gunicorn-ours"), users, profile=attach)
    for _, _, proc in recorders:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    result["files"] = {kind: [out for k, out, _ in recorders if k == kind and out.exists()] for kind in ("wall", "cpu")}
    return result


def pyinstrument_run(n: int, users) -> tuple[float, str]:
    from pyinstrument import Profiler

    from tasks import jobs, services

    stack.reset_work()
    ids = [services.task_create(owner=users.owner, name=f"prof-{i}", task_type="always_succeeds",
                                execution_time="0").pk for i in range(n + 5)]
    for pk in ids[:5]:  # warm-up: templates, serializers, the publisher thread
        jobs.run_attempt(pk, 1)
    profiler = Profiler(interval=0.0005)
    t = time.perf_counter()
    profiler.start()
    for pk in ids[5:]:
        jobs.run_attempt(pk, 1)
    profiler.stop()
    rate = n / (time.perf_counter() - t)
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    (c.RESULTS / "p1-pyinstrument.txt").write_text(text)
    stack.reset_work()
    return rate, text


def _print(title: str, total: int, rows: list) -> list[str]:
    lines = [f"  {title} ({total} samples)"]
    for name, n in rows:
        lines.append(f"    {100 * n / max(total, 1):5.1f}%  {name}")
    print("\n".join(lines), flush=True)
    return lines


def run(report, cfg, users) -> None:
    print("P1 profile: py-spy on the worker processes of one run, pyinstrument on run_attempt in-process", flush=True)
    result = pyspy_run(cfg, users)
    out = [f"P1 profile run: steady {result['steady']:.1f} tasks/s (with 4 py-spy samplers attached)"]
    total, inc, _ = summarise(result["files"]["wall"], only_containing="MainThread", top=40)
    out += _print("wall (incl. waiting), main thread of the workers: inclusive share", total, inc)
    total, inc, leaf = summarise(result["files"]["cpu"])
    out += _print("on-CPU, all threads: inclusive share", total, inc)
    out += _print("on-CPU, all threads: self share", total, leaf[:20])
    rate, text = pyinstrument_run(max(50, cfg.p1_n // 2), users)
    out.append(f"pyinstrument: run_attempt direct {rate:.1f} tasks/s; tree in {c.RESULTS / 'p1-pyinstrument.txt'}")
    print("\n".join(text.splitlines()[:80]), flush=True)
    (c.RESULTS / "p1-profile-summary.txt").write_text("\n".join(out) + "\n")
    report.add(Row("P1", "profile run: tasks/s steady (py-spy attached)", [result["steady"]], None, 1))
    report.notes.append(f"P1 profile summary in {c.RESULTS / 'p1-profile-summary.txt'}")
