"""What every benchmark shares: the isolated environment, child processes, statistics and the HTTP load generator.

Isolation: the bench uses its own PostgreSQL databases (BENCH_DB for Taskrunner, BENCH_BASE_DB for the plain-DRF
baseline), its own Redis database (BENCH_REDIS_URL, flushed freely: nothing else may live there) and its own channel
prefix. It refuses the development database and Redis DB 0.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
PY = os.environ.get("BENCH_PYTHON") or str(ROOT / ".venv" / "bin" / "python")
if not Path(PY).exists():
    PY = sys.executable
BIN = Path(PY).parent
RESULTS = Path(os.environ.get("BENCH_RESULTS", str(BENCH_DIR / "results")))
STATIC_ROOT = Path(os.environ.get("BENCH_STATIC_ROOT", str(BENCH_DIR / "results" / "static")))

PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
BENCH_DB = os.environ.get("BENCH_DB", "taskrunner_bench")
BASE_DB = os.environ.get("BENCH_BASE_DB", f"{BENCH_DB}_base")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
PREFIX = os.environ.get("BENCH_CHANNEL_PREFIX", "asgi-bench")
SECRET = "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGH"


def check_isolation() -> None:
    if BENCH_DB in ("taskrunner", "postgres", "template0", "template1") or BASE_DB == BENCH_DB:
        raise SystemExit(f"refusing to benchmark in database {BENCH_DB!r}/{BASE_DB!r}")
    db = urlparse(REDIS_URL).path.strip("/") or "0"
    if db == "0":
        raise SystemExit("refusing to use Redis DB 0: set BENCH_REDIS_URL to a dedicated database")


def app_env(**extra: str) -> dict[str, str]:
    """The environment of every Taskrunner process the bench starts: production settings, bench database/Redis."""
    env = dict(os.environ)
    for name in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="taskrunner_project.settings",
        DATABASE_URL=f"{PG_URL}/{BENCH_DB}",
        REDIS_URL=REDIS_URL,
        TASKRUNNER_CHANNEL_PREFIX=PREFIX,
        DEBUG="0",
        SECRET_KEY=SECRET,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_PROXY_SSL_HEADER="1",  # as behind a TLS proxy: requests carry X-Forwarded-Proto: https
        TASKRUNNER_CREATE_RATE="100000000/minute",  # the create throttle would turn a load test into 429s
        PYTHONUNBUFFERED="1",
        STATIC_ROOT=str(STATIC_ROOT),
    )
    env.update(extra)
    return env


# --- child processes ---------------------------------------------------------------------------------------------------

class Proc:
    """A child in its own process group (so a pool's children die with it), its output in a log file."""

    live: list["Proc"] = []

    def __init__(self, name: str, args: list[str], env: dict | None = None, cwd: Path | str = ROOT):
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = RESULTS / f"{name}.log"
        self.log = open(self.log_path, "ab")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(args, cwd=str(cwd), env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        Proc.live.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float) -> float:
        """Wait for exit; returns seconds since start. Raises if it did not exit in time."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"{self.name} did not finish within {timeout:.0f}s (log: {self.log_path})")
        if self.proc.returncode:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
        return time.perf_counter() - self.started

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(5)
        self._signal(signal.SIGKILL)  # children left behind by the group leader
        self.log.close()
        if self in Proc.live:
            Proc.live.remove(self)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def tail(self, n: int = 2000) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def stop_all() -> None:
    for proc in list(Proc.live):
        proc.stop(timeout=5)


def _on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def install_cleanup() -> None:
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, proc: Proc | None = None, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited at start-up:\n{proc.tail()}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class RssSampler(threading.Thread):
    """Samples the RSS of a process's children every 0.2 s; keeps the maximum per child."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak: dict[int, float] = {}
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.wait(0.2):
            for child in children(self.pid):
                mb = rss_mb(child)
                if mb:
                    self.peak[child] = max(self.peak.get(child, 0.0), mb)

    def stop(self) -> float | None:
        self.stopped.set()
        self.join(2)
        return max(self.peak.values()) if self.peak else None


# --- statistics and the table --------------------------------------------------------------------------------------------

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(xs, p: int = 0) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:.{p}f}"
    return f"{statistics.median(xs):.{p}f} ({min(xs):.{p}f}-{max(xs):.{p}f})"


def pct(sorted_xs: list[float], p: float):
    if not sorted_xs:
        return None
    return sorted_xs[min(len(sorted_xs) - 1, int(p * len(sorted_xs)))]


@dataclass
class Row:
    bench: str
    metric: str
    ours: list
    base: list | None = None
    digits: int = 0
    higher_is_better: bool = True
    target: str = ""
    verdict: str = ""
    note: str = ""

    def ratio(self):
        o, b = med(self.ours), med(self.base or [])
        if o is None or b in (None, 0):
            return None
        return o / b


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {row.bench} {row.metric}: ours {fmt(row.ours, row.digits)}"
              + (f" | baseline {fmt(row.base, row.digits)}" if row.base else "")
              + (f" | ratio {row.ratio():.2f}" if row.ratio() is not None else "")
              + (f" | {row.target} -> {row.verdict}" if row.target else ""), flush=True)
        return row

    def table(self) -> str:
        head = ["bench", "figure", "ours median (min-max)", "baseline median (min-max)", "ratio", "target", "verdict"]
        lines = [head]
        for r in self.rows:
            ratio = r.ratio()
            lines.append([r.bench, r.metric, fmt(r.ours, r.digits), fmt(r.base, r.digits) if r.base else "-",
                          f"{ratio:.2f}" if ratio is not None else "-", r.target or "-", r.verdict or "-"])
        widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
        out = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
        out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(out)


def verdict(ok: bool, by: str = "") -> str:
    return "met" if ok else f"MISSED{(' ' + by) if by else ''}"


def machine() -> str:
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    return f"nproc {os.cpu_count()}, memory {mem}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
