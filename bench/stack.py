"""The real stack under test: the bench databases, seeded rows, users, and the servers and workers as processes.

Taskrunner runs with production settings (DEBUG=0, a real SECRET_KEY, ALLOWED_HOSTS, pooled connections) against
BENCH_DB; the baselines (bench/baselines/) run against BENCH_BASE_DB with the same Redis database.
"""

from __future__ import annotations

import os
import subprocess
import time

from . import common as c
from .common import BIN, PY, ROOT, Proc

BASELINES = ROOT / "bench" / "baselines"
SEED_PREFIX = "seed-"
NOOP_QUEUE = "bench-noop"


def prepare() -> None:
    """Create and migrate the bench database (manage.py prepare), then configure Django in this process."""
    c.check_isolation()
    env = c.app_env()
    out = subprocess.run([PY, "manage.py", "prepare"], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"manage.py prepare failed:\n{out.stdout}\n{out.stderr}")
    collectstatic(env)
    setup_django()


def collectstatic(env) -> None:
    """With DEBUG off the pages need WhiteNoise's manifest, as the Dockerfile builds it. Only what the pages use
    (admin, DRF and the API docs' files are skipped to keep this to seconds); redone when static/ changes."""
    manifest = c.STATIC_ROOT / "staticfiles.json"
    newest = max((p.stat().st_mtime for p in (ROOT / "static").rglob("*") if p.is_file()), default=0)
    if manifest.exists() and manifest.stat().st_mtime > newest:
        return
    subprocess.run([PY, "manage.py", "collectstatic", "--noinput", "-v0", "-i", "drf_spectacular_sidecar", "-i",
                    "admin", "-i", "rest_framework"], cwd=ROOT, env=env, check=True)


def setup_django() -> None:
    import django

    os.environ.update(c.app_env())
    django.setup()


def flush_redis() -> None:
    import redis

    c.check_isolation()
    redis.Redis.from_url(c.REDIS_URL).flushdb()


def sql(statement: str, params=None):
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else None


# --- people ------------------------------------------------------------------------------------------------------------

class Users:
    """The bench's accounts: `owner` owns the seeded tasks; `few` owns three (for the fixed-query-count check)."""

    def __init__(self):
        from django.contrib.auth import get_user_model
        from django.test import Client
        from rest_framework.authtoken.models import Token

        User = get_user_model()
        self.owner, _ = User.objects.get_or_create(username="bench")
        self.few, _ = User.objects.get_or_create(username="bench-few")
        self.token = Token.objects.get_or_create(user=self.owner)[0].key
        client = Client()
        client.force_login(self.owner)
        self.session = client.cookies["sessionid"].value

    @property
    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}", "X-Forwarded-Proto": "https"}

    @property
    def page_headers(self) -> dict[str, str]:
        return {"Cookie": f"sessionid={self.session}", "X-Forwarded-Proto": "https"}


# --- rows --------------------------------------------------------------------------------------------------------------

def seed(users: Users, n: int) -> int:
    """n finished tasks owned by `owner` (plus 3 for `few`), inserted by SQL in one statement. Kept between runs."""
    have = sql("SELECT count(*) FROM tasks_task WHERE name LIKE %s", [SEED_PREFIX + "%"])[0][0]
    if have != n + 3:
        t = time.perf_counter()
        sql("TRUNCATE tasks_tasklog, tasks_taskattempt, tasks_task RESTART IDENTITY CASCADE")
        for owner, count, name in ((users.owner.pk, n, SEED_PREFIX), (users.few.pk, 3, SEED_PREFIX + "few-")):
            sql("""
                INSERT INTO tasks_task (name, task_type, execution_time, status, attempts, max_attempts,
                    last_attempt_number, version, progress, owner_id, created_at, updated_at, started_at, finished_at)
                SELECT %s || g, 'always_succeeds', 0,
                    (ARRAY['completed','completed','completed','completed','completed','completed','failed',
                           'failed','cancelled','completed'])[1 + g %% 10],
                    1, 3, 1, 3, 100, %s, now() - g * interval '7 seconds', now() - g * interval '7 seconds',
                    now() - g * interval '7 seconds', now() - g * interval '7 seconds'
                FROM generate_series(1, %s) g
            """, [name, owner, count])
        sql("ANALYZE tasks_task")
        print(f"  seeded {n} tasks in {time.perf_counter() - t:.1f}s", flush=True)
    return n + 3


def seed_max() -> int:
    return sql("SELECT coalesce(max(id), 0) FROM tasks_task WHERE name LIKE %s", [SEED_PREFIX + "%"])[0][0]


def fresh_db() -> None:
    """Give this process's connection back (a broken one is discarded: PostgreSQL may have restarted meanwhile)."""
    from django.db import connection

    connection.close()


def reset_work() -> None:
    """Drop every task the benchmarks created (everything but the seed) and every job in the bench Redis DB."""
    fresh_db()
    top = seed_max()
    sql("DELETE FROM tasks_tasklog WHERE task_id > %s", [top])
    sql("DELETE FROM tasks_taskattempt WHERE task_id > %s", [top])
    sql("DELETE FROM tasks_task WHERE id > %s", [top])
    flush_redis()


def seed_base(n: int) -> None:
    """The plain-DRF baseline's table, with the same number of rows as Taskrunner's."""
    import psycopg

    env = base_env()
    with psycopg.connect(f"{c.PG_URL}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [c.BASE_DB]).fetchone():
            conn.execute(f'CREATE DATABASE "{c.BASE_DB}"')
    subprocess.run([PY, "-m", "django", "migrate", "--run-syncdb", "-v", "0"], cwd=BASELINES, env=env, check=True)
    with psycopg.connect(f"{c.PG_URL}/{c.BASE_DB}", autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM plaindrf_item").fetchone()[0]
        if have != n:
            conn.execute("TRUNCATE plaindrf_item RESTART IDENTITY")
            conn.execute("INSERT INTO plaindrf_item (name, status, created_at) SELECT 'task-' || g, 'completed', "
                         "now() - g * interval '7 seconds' FROM generate_series(1, %s) g", [n])
            conn.execute("ANALYZE plaindrf_item")


def trim_base(n: int) -> None:
    import psycopg

    with psycopg.connect(f"{c.PG_URL}/{c.BASE_DB}", autocommit=True) as conn:
        conn.execute("DELETE FROM plaindrf_item WHERE id > %s", [n])


def base_env(**extra) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(PYTHONPATH=str(BASELINES), DJANGO_SETTINGS_MODULE="drfproj.settings", BENCH_BASE_DB=c.BASE_DB,
               BENCH_PG_URL=c.PG_URL, BENCH_REDIS_URL=c.REDIS_URL, BENCH_CHANNEL_PREFIX=c.PREFIX + "-base",
               PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


# --- processes -----------------------------------------------------------------------------------------------------------

def gunicorn_ours(port: int, workers: int = 2) -> Proc:
    p = Proc(f"gunicorn-ours-{port}", [str(BIN / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{port}",
                                       "taskrunner_project.wsgi"], env=c.app_env())
    c.wait_port(port, p)
    return p


def gunicorn_base(port: int, workers: int = 2) -> Proc:
    p = Proc(f"gunicorn-base-{port}", [str(BIN / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{port}",
                                       "drfproj.wsgi"], env=base_env(), cwd=BASELINES)
    c.wait_port(port, p)
    return p


def daphne_ours(port: int) -> Proc:
    p = Proc(f"daphne-ours-{port}", [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                                     "taskrunner_project.asgi:application"], env=c.app_env())
    c.wait_port(port, p)
    return p


def daphne_base(port: int) -> Proc:
    p = Proc(f"daphne-base-{port}", [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "chanproj.asgi:application"],
             env=base_env(DJANGO_SETTINGS_MODULE="chanproj.settings"), cwd=BASELINES)
    c.wait_port(port, p)
    return p


class Servers:
    """Servers shared by the benchmarks of one invocation (started on first use, stopped at the end)."""

    starters = {"gunicorn-ours": gunicorn_ours, "gunicorn-base": gunicorn_base, "daphne-ours": daphne_ours,
                "daphne-base": daphne_base}

    def __init__(self):
        self.running: dict[str, tuple[Proc, int]] = {}

    def get(self, kind: str, fresh: bool = False) -> tuple[Proc, int]:
        proc, port = self.running.get(kind, (None, 0))
        if proc is not None and (fresh or proc.proc.poll() is not None):
            proc.stop()
            proc = None
        if proc is None:
            port = c.free_port()
            proc = self.starters[kind](port)
            self.running[kind] = (proc, port)
        return proc, port

    def port(self, kind: str) -> int:
        return self.get(kind)[1]

    def stop(self) -> None:
        for proc, _ in self.running.values():
            proc.stop()
        self.running.clear()


servers = Servers()


def pool_ours(k: int, *, worker_class: str = "tasks.worker.TaskWorker", burst: bool = True, name: str = "pool-ours",
              **env) -> Proc:
    args = [PY, "manage.py", "rqworker-pool", "--num-workers", str(k), "--worker-class", worker_class]
    return Proc(name, args + (["--burst"] if burst else []) + ["default"], env=c.app_env(**env))


def pool_noop(k: int, *, burst: bool = True, name: str = "pool-noop") -> Proc:
    args = [str(BIN / "rq"), "worker-pool", "-n", str(k), "-u", c.REDIS_URL, "-P", str(ROOT)]
    return Proc(name, args + (["--burst"] if burst else []) + [NOOP_QUEUE], env=dict(os.environ, PYTHONPATH=str(ROOT)))
