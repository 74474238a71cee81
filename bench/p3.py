"""P3 API: list (page of 50 over the seeded 100k tasks) and create, 16 connections (wrk), through the recommended
production layout for HTTP, gunicorn with 2 sync workers (DEBUG=0, pooled connections, Token auth), against a plain DRF
list/create endpoint on gunicorn (2 sync workers, pooled connections) over a table with the same number of rows.

Runs are interleaved (ours list, plain list, ours create, plain create) so that the machine's noise hits both alike.
"""

from __future__ import annotations

import json

from . import common as c
from . import stack
from .common import Row, verdict
from .loadgen import load, warm

CREATE_BODY = json.dumps({"name": "bench-create", "task_type": "always_succeeds", "execution_time": "0"})
PLAIN_BODY = json.dumps({"name": "bench-create", "status": "pending"})


def run(report, cfg, users) -> None:
    print(f"P3: API list/create, {cfg.http_conns} connections, {cfg.http_duration:g}s x {cfg.runs} runs, gunicorn -w 2 "
          f"ours vs plain DRF", flush=True)
    stack.seed_base(cfg.seed_n)
    stack.reset_work()
    ours_port, base_port = stack.servers.port("gunicorn-ours"), stack.servers.port("gunicorn-base")
    ours_url, base_url = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{base_port}"
    hdr = users.api_headers
    cases = [
        ("list", "ours", f"{ours_url}/api/tasks/", hdr, None),
        ("list", "base", f"{base_url}/items/", {}, None),
        ("create", "ours", f"{ours_url}/api/tasks/", hdr, CREATE_BODY),
        ("create", "base", f"{base_url}/items/new/", {}, PLAIN_BODY),
    ]
    res = {(e, who): [] for e, who, *_ in cases}
    warm(ours_port, hdr)
    warm(base_port, {}, path="/items/")
    if not cfg.smoke:
        for _, _, url, h, body in cases:  # warm-up
            load(url, duration=2.0, conns=cfg.http_conns, headers=h, body=body)
    for i in range(cfg.runs):
        for endpoint, who, url, h, body in cases:
            res[(endpoint, who)].append(load(url, duration=cfg.http_duration, conns=cfg.http_conns, headers=h,
                                               body=body))
        print("  run %d: " % (i + 1) + ", ".join(
            f"{e} {w} {res[(e, w)][-1]['rps']:.0f} req/s p99 {res[(e, w)][-1]['p99']:.0f} ms" for e, w, *_ in cases),
            flush=True)
    for endpoint in ("list", "create"):
        ours, base = res[(endpoint, "ours")], res[(endpoint, "base")]
        row = report.add(Row("P3", f"{endpoint} req/s, {cfg.http_conns} conns", [r["rps"] for r in ours],
                             [r["rps"] for r in base], 0, target=">= 0.9x plain DRF"))
        row.verdict = verdict((row.ratio() or 0) >= 0.9, f"({row.ratio():.2f}x)" if row.ratio() else "")
        report.add(Row("P3", f"{endpoint} p50 ms", [r["p50"] for r in ours], [r["p50"] for r in base], 1,
                       higher_is_better=False))
        row = report.add(Row("P3", f"{endpoint} p99 ms", [r["p99"] for r in ours], [r["p99"] for r in base], 1,
                             higher_is_better=False, target="<= 60 ms"))
        p99 = c.med(row.ours)
        row.verdict = verdict(p99 is not None and p99 <= 60, f"by {p99 - 60:.0f} ms" if p99 else "")
        bad = sum(r["bad"] for r in ours + base)
        errors = [r["errors"] for r in ours + base if r["errors"]]
        if bad or errors:
            report.notes.append(f"P3 {endpoint}: {bad} non-2xx responses; socket errors: {'; '.join(errors) or 0}")
    stack.reset_work()
    stack.trim_base(cfg.seed_n)
