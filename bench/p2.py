"""P2 concurrency: K worker processes (rqworker-pool, TaskWorker), N tasks of 1 s each (always_succeeds: ten 0.1 s
steps with progress and cancellation checks): all finished within 1.15 x N/K s.

The tasks are created through the service (not the API: P2 is about the workers) before the pool starts in burst mode.
  makespan = first attempt started .. last attempt finished;  wall = pool spawned .. pool exited (adds start-up).
The issue's size is N = 10,000 (`--p2-n 10000`: ~42 min for K=4, ~21 min for K=8 per run); the default is 25 x K,
which keeps the same per-task overheads but amortises start-up over 25 s rather than 20-40 min.
"""

from __future__ import annotations

from . import common as c
from . import stack
from .common import Row, verdict


def one_run(k: int, n: int, seconds: float, users) -> dict:
    from tasks import services
    from tasks.models import Task, TaskAttempt

    stack.reset_work()
    top = stack.seed_max()
    for i in range(n):
        services.task_create(owner=users.owner, name=f"p2-{i}", task_type="always_succeeds", execution_time=seconds)
    pool = stack.pool_ours(k, name=f"pool-p2-k{k}")
    sampler = c.RssSampler(pool.pid)
    sampler.start()
    wall = pool.wait(timeout=120 + 3 * n * seconds / k)
    pool.stop()
    rss = sampler.stop()
    attempts = TaskAttempt.objects.filter(task_id__gt=top)
    first = attempts.order_by("started_at").values_list("started_at", flat=True).first()
    last = attempts.order_by("-finished_at").values_list("finished_at", flat=True).first()
    done = Task.objects.filter(pk__gt=top, status="completed").count()
    durations, gaps, by_worker = [], [], {}
    for pid, started, finished in attempts.filter(finished_at__isnull=False).values_list(
            "worker_pid", "started_at", "finished_at"):
        by_worker.setdefault(pid, []).append((started, finished))
        durations.append((finished - started).total_seconds())
    for rows in by_worker.values():
        rows.sort()
        gaps += [(b[0] - a[1]).total_seconds() for a, b in zip(rows, rows[1:])]
    problems = [] if done == n and attempts.count() == n else [f"K={k}: {done}/{n} completed, {attempts.count()} attempts"]
    return {"makespan": (last - first).total_seconds() if first and last else None, "wall": wall, "rss": rss,
            "problems": problems, "duration": c.med(durations), "gap": c.med(gaps)}


def run(report, cfg, users) -> None:
    for k in cfg.p2_ks:
        n = cfg.p2_n or cfg.p2_per_k * k
        ideal = n * cfg.p2_seconds / k
        print(f"P2: K={k} worker processes, N={n} tasks of {cfg.p2_seconds:g}s (ideal {ideal:.0f}s); {cfg.runs} runs",
              flush=True)
        results = []
        for i in range(cfg.runs):
            results.append(one_run(k, n, cfg.p2_seconds, users))
            r = results[-1]
            print(f"  run {i + 1}: makespan {r['makespan']:.1f}s ({r['makespan'] / ideal:.3f} x N/K), wall "
                  f"{r['wall']:.1f}s, attempt {r['duration'] or 0:.3f}s + gap {r['gap'] or 0:.3f}s, peak worker RSS "
                  f"{r['rss'] or 0:.0f} MB", flush=True)
        row = report.add(Row("P2", f"K={k} N={n} x {cfg.p2_seconds:g}s: makespan s (baseline = N/K)",
                             [r["makespan"] for r in results], [ideal] * len(results), 1, higher_is_better=False,
                             target="<= 1.15 x N/K"))
        ratio = row.ratio()
        row.verdict = verdict(ratio is not None and ratio <= 1.15, f"by {ratio - 1.15:+.2f}" if ratio else "")
        report.add(Row("P2", f"K={k}: wall s incl. start-up", [r["wall"] for r in results], [ideal] * len(results), 1,
                       higher_is_better=False))
        report.add(Row("P2", f"K={k}: tasks/s (makespan)", [n / r["makespan"] for r in results if r["makespan"]],
                       [k / cfg.p2_seconds] * len(results), 2))
        report.add(Row("P2", f"K={k}: attempt duration s, median (claim to finish)", [r["duration"] for r in results],
                       [cfg.p2_seconds] * len(results), 3, higher_is_better=False))
        report.add(Row("P2", f"K={k}: gap between a worker's attempts s, median", [r["gap"] for r in results], None, 3,
                       higher_is_better=False))
        problems = [p for r in results for p in r["problems"]]
        if problems:
            report.notes.append("P2 completeness problems: " + "; ".join(problems))
    stack.reset_work()
