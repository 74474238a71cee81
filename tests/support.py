"""Helpers for tests that cross process boundaries: real RQ workers, a real daphne, polling for outcomes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_REDIS_URL = os.environ.setdefault("TASKRUNNER_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):
    """Poll until predicate() is truthy; return its value or fail with `message`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(database_name: str, **extra: str) -> dict[str, str]:
    """Environment for a worker or server subprocess that uses the test database and test Redis."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="taskrunner_project.settings",
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{database_name}",
        REDIS_URL=TEST_REDIS_URL,
        DEBUG="1",
        PYTHONUNBUFFERED="1",
        TASKRUNNER_RETRY_BACKOFF_BASE=str(settings.TASKRUNNER_RETRY_BACKOFF_BASE),
        TASKRUNNER_SWEEP_INTERVAL=str(settings.TASKRUNNER_SWEEP_INTERVAL),
        TASKRUNNER_HEARTBEAT_INTERVAL=str(settings.TASKRUNNER_HEARTBEAT_INTERVAL),
        TASKRUNNER_HEARTBEAT_TIMEOUT=str(settings.TASKRUNNER_HEARTBEAT_TIMEOUT),
        TASKRUNNER_CREATE_RATE="100000/minute",
        TASKRUNNER_CHANNEL_PREFIX=os.environ.get("TASKRUNNER_CHANNEL_PREFIX", "asgi-test"),
    )
    env.update(extra)
    return env


class Process:
    """A child process in its own process group, with its output in a log file for failure reports."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.args = args
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a pool's children too)."""
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self.kill(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.proc.wait(5)
        else:
            self.kill(signal.SIGKILL)  # stray children of a dead parent
        self.log.close()


def start_worker(database_name: str, tmp_path: Path, *, worker_class: str = "tasks.worker.TaskWorker",
                 processes: int = 1, name: str = "worker", **env: str) -> Process:
    """A real RQ worker: `rqworker` for one process, `rqworker-pool` for several."""
    manage = [sys.executable, str(ROOT / "manage.py")]
    if processes == 1:
        args = manage + ["rqworker", "--worker-class", worker_class, "default"]
    else:
        args = manage + ["rqworker-pool", "--num-workers", str(processes), "--worker-class", worker_class, "default"]
    return Process(args, child_env(database_name, **env), tmp_path / f"{name}.log")


def start_daphne(database_name: str, tmp_path: Path, port: int, **env: str) -> Process:
    args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "taskrunner_project.asgi:application"]
    return Process(args, child_env(database_name, **env), tmp_path / "daphne.log")


def race(actions) -> list:
    """Run the callables at the same moment, one thread each (each with its own database connection).

    Returns, in order, each one's result, or the InvalidTransition it raised (a refused transition is a normal outcome
    of a race; any other exception fails the test).
    """
    import threading

    from django.db import connection

    from tasks.lifecycle import InvalidTransition

    barrier = threading.Barrier(len(actions))
    outcomes: list = [None] * len(actions)
    errors: list = []

    def run(index, action):
        barrier.wait()
        try:
            outcomes[index] = action()
        except InvalidTransition as refused:
            outcomes[index] = refused
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, action)) for i, action in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return outcomes


def winners(outcomes) -> list:
    from tasks.lifecycle import InvalidTransition

    return [outcome for outcome in outcomes if not isinstance(outcome, InvalidTransition)]
