"""P4 push latency: 50 dashboards (`/ws/tasks/?html=1`, signed in by session cookie) on daphne; state changes made
through the services (cancel / retry of 50 tasks) by separate sender processes.

- paced: 20 changes/s: latency = frame received - transaction committed (same clock: CLOCK_MONOTONIC).
- burst: 1000 changes as fast as 4 sender processes can commit them (at most 1000/s): frames lost (expected = changes
  x sockets) and convergence = how long after the last commit every socket holds every task's final version.
Baseline: bare Channels (bench/baselines/chanproj, same PubSub layer, one consumer forwarding group events) on daphne,
the same 50 sockets and the same client, messages stamped right before group_send().
"""

from __future__ import annotations

import json
import subprocess

from . import common as c
from . import stack
from .common import PY, ROOT, Row, pct, verdict

BASELINES = stack.BASELINES


def _client(url: str, conns: int, out, headers: dict, max_wait: float, idle: float) -> subprocess.Popen:
    args = [PY, "-m", "bench.wsclient", "listen", url, str(conns), str(out), "--max-wait", str(max_wait),
            "--idle", str(idle)]
    if headers.get("Cookie"):
        args += ["--cookie", headers["Cookie"]]
    if headers.get("Origin"):
        args += ["--origin", headers["Origin"]]
    proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    line = proc.stdout.readline().split()
    if not line or line[0] != "READY" or int(line[1]) != conns:
        proc.kill()
        raise RuntimeError(f"websocket client: expected READY {conns}, got {line}")
    return proc


def _finish_client(proc: subprocess.Popen, out, timeout: float) -> dict:
    try:
        proc.stdin.write("done\n")
        proc.stdin.flush()
    except BrokenPipeError:
        pass
    proc.wait(timeout)
    return json.loads(out.read_text())


def _senders_ours(count: int, rate: float, procs: int, task_ids: list[int], tag: str) -> list[dict]:
    senders = []
    per = count // procs
    for j in range(procs):
        ids = task_ids[j::procs]
        out = c.RESULTS / f"p4-send-{tag}-{j}.json"
        p = subprocess.Popen([PY, "-m", "bench.p4send", str(per), str(rate / procs), str(out),
                              ",".join(map(str, ids))], cwd=ROOT, env=c.app_env(), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
        senders.append((p, out))
    for p, _ in senders:
        if p.stdout.readline().strip() != "READY":
            raise RuntimeError("p4 sender failed to start")
    for p, _ in senders:
        p.stdin.write("go\n")
        p.stdin.flush()
    result = []
    for p, out in senders:
        if p.wait(120):
            raise RuntimeError(f"p4 sender exited with {p.returncode}")
        result.extend(json.loads(out.read_text())["sent"])
    return result


def _sender_base(count: int, rate: float, tag: str) -> list[dict]:
    out = c.RESULTS / f"p4-send-base-{tag}.json"
    subprocess.run([PY, str(BASELINES / "chansend.py"), str(count), str(rate), str(out)], cwd=BASELINES,
                   env=stack.base_env(DJANGO_SETTINGS_MODULE="chanproj.settings"), check=True, timeout=120)
    return json.loads(out.read_text())["sent"]


def analyse(sent: list, got: dict) -> dict:
    commit = {(t, v): ts for t, v, ts in sent}
    final = {}
    for t, v, _ in sent:
        final[t] = max(final.get(t, 0), v)
    last_commit = max(ts for _, _, ts in sent)
    first_commit = min(ts for _, _, ts in sent)
    lat, seen, final_at = [], set(), {}
    for conn, t_recv, task, version in got["frames"]:
        key = (conn, task, version)
        if (task, version) not in commit or key in seen:
            continue
        seen.add(key)
        lat.append(t_recv - commit[(task, version)])
        if final.get(task) == version:
            final_at[(conn, task)] = t_recv
    lat.sort()
    conns = got["conns"]
    expected = len(sent) * conns
    missing_final = conns * len(final) - len(final_at)
    converge = (max(final_at.values()) - last_commit) if final_at and not missing_final else None
    return {"p50": pct(lat, 0.5) * 1e3 if lat else None, "p99": pct(lat, 0.99) * 1e3 if lat else None,
            "lost": expected - len(seen), "expected": expected, "converge": converge, "missing_final": missing_final,
            "change_rate": len(sent) / (last_commit - first_commit) if last_commit > first_commit else None}


def one(kind: str, mode: str, port: int, cfg, users, task_ids) -> dict:
    url = f"ws://127.0.0.1:{port}/ws/tasks/" + ("?html=1" if kind == "ours" else "")
    headers = {"Cookie": f"sessionid={users.session}", "Origin": f"http://127.0.0.1:{port}"} if kind == "ours" else {}
    count = cfg.p4_paced if mode == "paced" else cfg.p4_burst
    rate = cfg.p4_rate if mode == "paced" else float(cfg.p4_burst)  # the burst: at most 1000/s ... as fast as it goes
    out = c.RESULTS / f"p4-recv-{kind}-{mode}.json"
    client = _client(url, cfg.p4_conns, out, headers, max_wait=30, idle=0.5 if cfg.smoke else 1.5)
    try:
        if kind == "ours":
            sent = _senders_ours(count, rate, cfg.p4_senders if mode == "burst" else 1, task_ids, mode)
        else:
            sent = _sender_base(count, 0 if mode == "burst" else rate, mode)
        got = _finish_client(client, out, timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
    return analyse(sent, got)


def run(report, cfg, users) -> None:
    from tasks import services

    print(f"P4: {cfg.p4_conns} sockets; paced {cfg.p4_paced} changes at {cfg.p4_rate:g}/s; burst {cfg.p4_burst} "
          f"changes; ours (daphne, /ws/tasks/?html=1) vs bare Channels; {cfg.runs} runs", flush=True)
    stack.reset_work()
    task_ids = [services.task_create(owner=users.owner, name=f"p4-{i}", task_type="always_succeeds",
                                     execution_time="1").pk for i in range(50)]
    res = {(k, m): [] for k in ("ours", "base") for m in ("paced", "burst")}
    ours_port, base_port = stack.servers.port("daphne-ours"), stack.servers.port("daphne-base")
    for i in range(cfg.runs):
        for mode in ("paced", "burst"):
            for kind, port in (("base", base_port), ("ours", ours_port)):
                res[(kind, mode)].append(one(kind, mode, port, cfg, users, task_ids))
                r = res[(kind, mode)][-1]
                print(f"  run {i + 1} {mode} {kind}: p50 {r['p50'] or 0:.1f} ms p99 {r['p99'] or 0:.1f} ms, lost "
                      f"{r['lost']}/{r['expected']}, converged "
                      f"{'%.2fs' % r['converge'] if r['converge'] is not None else 'NO'}, "
                      f"changes/s {r['change_rate'] or 0:.0f}", flush=True)
    stack.reset_work()
    pick = lambda kind, mode, key: [r[key] for r in res[(kind, mode)]]  # noqa: E731
    for key, limit in (("p50", 30), ("p99", 100)):
        row = report.add(Row("P4", f"paced {cfg.p4_rate:g}/s commit->frame {key} ms", pick("ours", "paced", key),
                             pick("base", "paced", key), 1, higher_is_better=False, target=f"<= {limit} ms"))
        v = c.med(row.ours)
        row.verdict = verdict(v is not None and v <= limit, f"by {v - limit:.0f} ms" if v else "")
    report.add(Row("P4", "paced: changes committed/s (sender)", pick("ours", "paced", "change_rate"),
                   pick("base", "paced", "change_rate"), 1))
    report.add(Row("P4", "paced frames lost", pick("ours", "paced", "lost"), pick("base", "paced", "lost"), 0,
                   higher_is_better=False))
    row = report.add(Row("P4", f"burst {cfg.p4_burst}: frames lost of {cfg.p4_burst * cfg.p4_conns}",
                         pick("ours", "burst", "lost"), pick("base", "burst", "lost"), 0, higher_is_better=False,
                         target="0"))
    row.verdict = verdict(max(row.ours) == 0, f"(max {max(row.ours)})")
    conv = pick("ours", "burst", "converge")
    row = report.add(Row("P4", "burst: all sockets converged, s after last commit",
                         [x if x is not None else float("inf") for x in conv],
                         [x if x is not None else float("inf") for x in pick("base", "burst", "converge")], 2,
                         higher_is_better=False, target="<= 5 s"))
    worst = max(x if x is not None else float("inf") for x in conv)
    row.verdict = verdict(worst <= 5, f"(worst {worst:.1f} s)")
    report.add(Row("P4", "burst commit->frame p99 ms", pick("ours", "burst", "p99"), pick("base", "burst", "p99"), 0,
                   higher_is_better=False))
    report.add(Row("P4", "burst: changes committed/s (senders)", pick("ours", "burst", "change_rate"),
                   pick("base", "burst", "change_rate"), 0))
