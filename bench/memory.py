"""Memory: the RSS of a worker process (peak over a run of zero-duration tasks, `rqworker-pool -n 2` TaskWorker vs
bare `rq worker-pool -n 2` no-op) and of daphne idle and with 500 open sockets on /ws/tasks/ (ours, signed in, with
?html=1) vs the bare Channels consumer.
"""

from __future__ import annotations

import subprocess
import time

from . import common as c
from . import stack
from .common import PY, ROOT, Row
from .p1 import noop_run


def worker_rss(n: int, users) -> float | None:
    from tasks import services

    stack.reset_work()
    for i in range(n):
        services.task_create(owner=users.owner, name=f"mem-{i}", task_type="always_succeeds", execution_time="0")
    pool = stack.pool_ours(2, name="pool-mem")
    sampler = c.RssSampler(pool.pid)
    sampler.start()
    pool.wait(timeout=60 + n)
    pool.stop()
    stack.reset_work()
    return sampler.stop()


def daphne_rss(proc, port: int, sockets: int, headers: dict, path: str) -> tuple[float, float, int]:
    idle = c.rss_mb(proc.pid)
    args = [PY, "-m", "bench.wsclient", "hold", f"ws://127.0.0.1:{port}{path}", str(sockets)]
    if headers.get("Cookie"):
        args += ["--cookie", headers["Cookie"], "--origin", headers["Origin"]]
    client = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        line = client.stdout.readline().split()
        opened = int(line[1]) if len(line) > 1 else 0
        time.sleep(1.0)
        held = c.rss_mb(proc.pid)
        client.stdin.write("done\n")
        client.stdin.flush()
        client.wait(30)
    finally:
        if client.poll() is None:
            client.kill()
    return idle, held, opened


def run(report, cfg, users) -> None:
    n = max(10, cfg.p1_n // 4)
    print(f"memory: worker RSS over {n} tasks ({cfg.runs} runs); daphne with {cfg.mem_sockets} sockets", flush=True)
    if cfg.worker_rss:  # sampled during P1 in this invocation
        ours_w, base_w = cfg.worker_rss
    else:
        ours_w, base_w = [], []
        for _ in range(cfg.runs):
            ours_w.append(worker_rss(n, users))
            base_w.append(noop_run(n)["rss"])
    report.add(Row("memory", "worker process RSS MB (peak)", ours_w, base_w, 0, higher_is_better=False))
    # Fresh servers for the idle figure, except in the smoke mode (it only proves this runs).
    ours, ours_port = stack.servers.get("daphne-ours", fresh=not cfg.smoke)
    base, base_port = stack.servers.get("daphne-base", fresh=not cfg.smoke)
    ours_h = {"Cookie": f"sessionid={users.session}", "Origin": f"http://127.0.0.1:{ours_port}"}
    o = [daphne_rss(ours, ours_port, cfg.mem_sockets, ours_h, "/ws/tasks/?html=1") for _ in range(cfg.runs)]
    b = [daphne_rss(base, base_port, cfg.mem_sockets, {}, "/ws/tasks/") for _ in range(cfg.runs)]
    report.add(Row("memory", "daphne RSS MB, idle", [x[0] for x in o[:1]], [x[0] for x in b[:1]], 0,
                   higher_is_better=False))
    report.add(Row("memory", f"daphne RSS MB, {cfg.mem_sockets} sockets open", [x[1] for x in o], [x[1] for x in b],
                   0, higher_is_better=False))
    short = [x[2] for x in o + b if x[2] != cfg.mem_sockets]
    if short:
        report.notes.append(f"memory: only {short} of {cfg.mem_sockets} sockets opened in some runs")
