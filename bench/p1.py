"""P1 throughput: zero-duration tasks created through the API, run to completed by `rqworker-pool -n 2` (TaskWorker),
with every attempt row, log line and event checked, against bare RQ no-op jobs on `rq worker-pool -n 2`.

Per run the queue is filled first (tasks through the API on gunicorn / no-op jobs with enqueue_many), then the pool is
started in burst mode. Figures:
  steady tasks/s = N / (first attempt started .. last attempt finished)   (RQ: first job started .. last job ended)
  wall tasks/s   = N / (pool spawned .. pool exited), with interpreter start-up and the pool's 1 s exit poll.
"""

from __future__ import annotations

import http.client
import json
import threading
import time

from . import common as c
from . import stack
from .common import Row, verdict
from .loadgen import warm


def api_create(port: int, headers: dict, n: int, conns: int = 4, prefix: str = "p1") -> float:
    """Create n zero-duration tasks through POST /api/tasks/; returns creates/s."""
    errors = []
    counter = iter(range(n))
    lock = threading.Lock()
    body_headers = dict(headers, **{"Content-Type": "application/json"})

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            conn.request("POST", "/api/tasks/", body=json.dumps(
                {"name": f"{prefix}-{i}", "task_type": "always_succeeds", "execution_time": "0"}), headers=body_headers)
            resp = conn.getresponse()
            text = resp.read()
            if resp.status != 201:
                errors.append(f"{resp.status} {text[:200]!r}")
        conn.close()

    t = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(conns)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    if errors:
        raise RuntimeError(f"{len(errors)} creates failed, first: {errors[0]}")
    return n / (time.perf_counter() - t)


class EventCounter(threading.Thread):
    """Counts what the workers publish on the PubSub layer (one Redis channel per group, msgpack payloads): task.updated
    events to staff for running/completed, and log events to the task groups."""

    def __init__(self):
        super().__init__(daemon=True)
        import redis

        self.pubsub = redis.Redis.from_url(c.REDIS_URL).pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(f"{c.PREFIX}__group__*")
        self.counts = {"staff running/completed": 0, "task logs": 0, "other": 0}
        self.stopped = threading.Event()

    def run(self):
        import msgpack

        while not self.stopped.is_set():
            msg = self.pubsub.get_message(timeout=0.2)
            if not msg or msg["type"] != "pmessage":
                continue
            group = msg["channel"].decode().rsplit("__group__", 1)[1]
            try:
                event = msgpack.unpackb(msg["data"])
            except Exception:  # noqa: BLE001 - count it as unknown
                event = {}
            status = (event.get("task") or {}).get("status")
            if group == "staff" and status in ("running", "completed"):
                self.counts["staff running/completed"] += 1
            elif group.startswith("task-") and event.get("type") == "task.log":
                self.counts["task logs"] += 1
            elif not group.startswith("user-"):
                self.counts["other"] += 1

    def stop(self):
        time.sleep(0.5)
        self.stopped.set()
        self.join(2)
        self.pubsub.close()
        return self.counts


def ours_run(n: int, port: int, users, *, worker_class="tasks.worker.TaskWorker", processes: int = 2,
             profile=None) -> dict:
    from tasks.models import Task, TaskAttempt, TaskLog

    stack.reset_work()
    top = stack.seed_max()
    warm(port, users.api_headers)
    create_rate = api_create(port, users.api_headers, n)
    time.sleep(0.3)  # let the servers' publisher threads hand over the creation events
    events = EventCounter()
    events.start()
    pool = stack.pool_ours(processes, worker_class=worker_class)
    sampler = c.RssSampler(pool.pid)
    sampler.start()
    if profile:
        profile(pool)
    wall = pool.wait(timeout=60 + n / 2)
    pool.stop()
    rss = sampler.stop()
    counts = events.stop()
    mine = Task.objects.filter(pk__gt=top)
    done = mine.filter(status="completed").count()
    attempts = TaskAttempt.objects.filter(task_id__gt=top, status="succeeded")
    span = attempts.order_by("started_at").values_list("started_at", flat=True).first(), \
        attempts.order_by("-finished_at").values_list("finished_at", flat=True).first()
    logs = TaskLog.objects.filter(task_id__gt=top).count()
    problems = []
    if done != n or attempts.count() != n:
        problems.append(f"{done}/{n} completed, {attempts.count()} attempts succeeded")
    if logs != 3 * n:
        problems.append(f"{logs} log lines (expected {3 * n})")
    # per task at least: running and completed to staff (progress may add one), started/completed log lines
    if counts["staff running/completed"] < 2 * n or counts["task logs"] < 2 * n:
        problems.append(f"events published by the workers: {counts} (expected >= {2 * n} of each)")
    steady = n / (span[1] - span[0]).total_seconds() if span[0] and span[1] else None
    return {"steady": steady, "wall": n / wall, "create": create_rate, "rss": rss, "problems": problems,
            "events": counts}


def noop_run(n: int) -> dict:
    import redis
    from rq import Queue
    from rq.job import Job

    stack.flush_redis()
    conn = redis.Redis.from_url(c.REDIS_URL)
    q = Queue(stack.NOOP_QUEUE, connection=conn)
    jobs = q.enqueue_many([Queue.prepare_data("bench.baselines.noop.noop") for _ in range(n)])
    pool = stack.pool_noop(2)
    sampler = c.RssSampler(pool.pid)
    sampler.start()
    wall = pool.wait(timeout=60 + n / 5)
    pool.stop()
    rss = sampler.stop()
    done = [j for j in Job.fetch_many([j.id for j in jobs], connection=conn) if j and j.ended_at]
    problems = [] if len(done) == n else [f"{len(done)}/{n} no-op jobs finished"]
    span = (max(j.ended_at for j in done) - min(j.started_at for j in done)).total_seconds() if done else None
    return {"steady": len(done) / span if span else None, "wall": n / wall, "rss": rss, "problems": problems}


def direct_rate(n: int, users) -> tuple[float, int]:
    """The bookkeeping alone: tasks.jobs.run_attempt called in this process, no RQ. Returns tasks/s, queries/task."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tasks import jobs, services

    stack.reset_work()
    ids = [services.task_create(owner=users.owner, name=f"direct-{i}", task_type="always_succeeds",
                                execution_time="0").pk for i in range(n + 1)]
    with CaptureQueriesContext(connection) as queries:
        jobs.run_attempt(ids[0], 1)
    t = time.perf_counter()
    for pk in ids[1:]:
        jobs.run_attempt(pk, 1)
    rate = n / (time.perf_counter() - t)
    stack.reset_work()
    return rate, len(queries)


def run(report, cfg, users) -> None:
    n, runs = cfg.p1_n, cfg.runs
    print(f"P1: {n} zero-duration tasks through the API, rqworker-pool -n 2 TaskWorker vs rq worker-pool -n 2 no-op; "
          f"{runs} runs", flush=True)
    ours, base = [], []
    port = stack.servers.port("gunicorn-ours")
    for i in range(runs):
        base.append(noop_run(n))
        ours.append(ours_run(n, port, users))
        print(f"  run {i + 1}: ours steady {ours[-1]['steady']:.1f}/s wall {ours[-1]['wall']:.1f}/s | "
              f"no-op steady {base[-1]['steady']:.1f}/s wall {base[-1]['wall']:.1f}/s; events {ours[-1]['events']}",
              flush=True)
    cfg.worker_rss = ([r["rss"] for r in ours], [r["rss"] for r in base])
    fork = ours_run(max(20, n // 4), port, users, worker_class="tasks.worker.ForkingTaskWorker") if cfg.extras else None
    stack.reset_work()
    problems = [p for r in ours + base + ([fork] if fork else []) for p in r["problems"]]
    steady = report.add(Row("P1", "tasks/s steady, 2 procs (TaskWorker)", [r["steady"] for r in ours],
                            [r["steady"] for r in base], 1, target=">= 1.0x RQ no-op"))
    steady.verdict = verdict((steady.ratio() or 0) >= 1.0, f"({steady.ratio():.2f}x)" if steady.ratio() else "")
    report.add(Row("P1", "tasks/s wall incl. start-up", [r["wall"] for r in ours], [r["wall"] for r in base], 1))
    report.add(Row("P1", "API creates/s while filling (4 conns)", [r["create"] for r in ours], None, 0))
    if fork:
        report.add(Row("P1", "tasks/s steady, ForkingTaskWorker x2", [fork["steady"]], [r["steady"] for r in base], 1))
    if cfg.extras:
        rate, queries = direct_rate(max(20, n // 4), users)
        report.add(Row("P1", "tasks/s direct, 1 proc, no RQ", [rate], None, 1))
        report.notes.append(f"P1: one zero-duration task costs {queries} SQL statements in the worker "
                            f"(claim, run, finish; measured with CaptureQueriesContext).")
    if problems:
        report.notes.append("P1 completeness problems: " + "; ".join(problems[:5]))
    print(f"  P1 completeness: {'every task completed with 1 attempt, 3 log lines, all events' if not problems else problems}",
          flush=True)
