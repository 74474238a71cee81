"""P5 pages: the dashboard HTML (`/`, session cookie) and the API list (`/api/tasks/`, Token) with the seeded 100k
tasks, one connection at a time (latency, not throughput), on gunicorn; and the number of SQL queries per page for
the owner of 100k tasks and for the owner of 3 (it must be the same: the query count does not grow with the data).
"""

from __future__ import annotations

from . import common as c
from . import stack
from .common import Row, verdict
from .loadgen import load, warm


def query_counts(users) -> dict[str, tuple[int, int]]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from rest_framework.authtoken.models import Token

    counts = {}
    for label, path in (("dashboard", "/"), ("api list", "/api/tasks/")):
        per_user = []
        for user in (users.owner, users.few):
            client = Client(HTTP_HOST="127.0.0.1", HTTP_X_FORWARDED_PROTO="https")
            headers = {}
            if path == "/":
                client.force_login(user)
            else:
                headers["HTTP_AUTHORIZATION"] = f"Token {Token.objects.get_or_create(user=user)[0].key}"
            client.get(path, **headers)  # first request: sessions, content types ... cached afterwards
            with CaptureQueriesContext(connection) as queries:
                response = client.get(path, **headers)
            assert response.status_code == 200, (path, response.status_code)
            per_user.append(len(queries))
        counts[label] = tuple(per_user)
    return counts


def run(report, cfg, users) -> None:
    print(f"P5: dashboard and API list with {cfg.seed_n} tasks, 1 connection, {cfg.p5_duration:g}s x {cfg.runs} runs",
          flush=True)
    stack.seed_base(cfg.seed_n)
    stack.reset_work()
    ours_port, base_port = stack.servers.port("gunicorn-ours"), stack.servers.port("gunicorn-base")
    cases = [
        ("dashboard /", "ours", f"http://127.0.0.1:{ours_port}/", users.page_headers),
        ("API list", "ours", f"http://127.0.0.1:{ours_port}/api/tasks/", users.api_headers),
        ("API list", "base", f"http://127.0.0.1:{base_port}/items/", {}),
    ]
    res = {(name, who): [] for name, who, *_ in cases}
    warm(ours_port, users.api_headers)
    warm(base_port, {}, path="/items/")
    if not cfg.smoke:
        for _, _, url, h in cases:
            load(url, duration=1, conns=1, headers=h)
    for _ in range(cfg.runs):
        for name, who, url, h in cases:
            res[(name, who)].append(load(url, duration=cfg.p5_duration, conns=1, headers=h))
    for name in ("dashboard /", "API list"):
        ours = res[(name, "ours")]
        base = res.get((name, "base"))
        row = report.add(Row("P5", f"{name} p50 ms, 1 conn", [r["p50"] for r in ours],
                             [r["p50"] for r in base] if base else None, 1, higher_is_better=False, target="<= 50 ms"))
        p50 = c.med(row.ours)
        row.verdict = verdict(p50 is not None and p50 <= 50, f"by {p50 - 50:.0f} ms" if p50 else "")
        report.add(Row("P5", f"{name} p99 ms, 1 conn", [r["p99"] for r in ours],
                       [r["p99"] for r in base] if base else None, 1, higher_is_better=False))
        bad = sum(r["bad"] for r in ours)
        if bad:
            report.notes.append(f"P5 {name}: {bad} non-2xx responses")
    for label, (many, few) in query_counts(users).items():
        row = report.add(Row("P5", f"{label}: queries/page, {cfg.seed_n} tasks (3 tasks: {few})", [many], None, 0,
                             target="fixed"))
        row.verdict = verdict(many == few, f"({many} vs {few})")
