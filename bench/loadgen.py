"""HTTP load: wrk (closed loop, keep-alive connections, latency percentiles) where it is installed, else a small
Python generator with the same output (it saturates sooner: use it for the smoke mode, not for figures)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time
from urllib.parse import urlparse

from .common import RESULTS, pct


def warm(port: int, headers: dict, requests: int = 8, path: str = "/api/tasks/?page_size=1") -> None:
    """A few concurrent requests, so that every server worker has loaded its code and opened its pool."""
    def one():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", path, headers=headers)
        conn.getresponse().read()
        conn.close()

    threads = [threading.Thread(target=one) for _ in range(requests)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)


def have_wrk() -> bool:
    return os.environ.get("BENCH_LOADGEN", "wrk") == "wrk" and shutil.which("wrk") is not None


def _ms(v: str, unit: str) -> float:
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def load(url: str, *, duration: float, conns: int, headers: dict[str, str] | None = None,
         body: str | None = None) -> dict:
    """Closed-loop load: `conns` keep-alive connections for `duration` s. Returns rps, p50, p99 (ms), bad, errors."""
    headers = headers or {}
    if have_wrk():
        return _wrk(url, duration, conns, headers, body)
    return _pyload(url, duration, conns, headers, body)


def _wrk(url, duration, conns, headers, body):
    RESULTS.mkdir(parents=True, exist_ok=True)
    cmd = ["wrk", "-t1" if conns < 8 else "-t2", f"-c{conns}", f"-d{max(1, int(round(duration)))}s", "--latency",
           "--timeout", "10s"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    if body is not None:
        script = RESULTS / f"post-{abs(hash(body))}.lua"
        script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                          'wrk.headers["Content-Type"] = "application/json"\n')
        cmd += ["-s", str(script)]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {p: _ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    err = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": lat.get("50"), "p99": lat.get("99"), "bad": int(bad.group(1)) if bad else 0,
            "errors": err.group(1) if err else "", "tool": "wrk"}


def _pyload(url, duration, conns, headers, body):
    u = urlparse(url)
    path = u.path + (f"?{u.query}" if u.query else "")
    lat: list[float] = []
    bad = [0]
    errors = [0]
    lock = threading.Lock()
    end = time.perf_counter() + duration
    method = "POST" if body is not None else "GET"
    hdrs = dict(headers)
    if body is not None:
        hdrs["Content-Type"] = "application/json"

    def worker():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        mine = []
        while time.perf_counter() < end:
            t = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=hdrs)
                resp = conn.getresponse()
                resp.read()
                if resp.status >= 400:
                    with lock:
                        bad[0] += 1
            except (OSError, http.client.HTTPException):
                with lock:
                    errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
                continue
            mine.append(time.perf_counter() - t)
        conn.close()
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(conns)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join(duration + 30)
    elapsed = time.perf_counter() - t0
    lat.sort()
    return {"rps": len(lat) / elapsed, "p50": (pct(lat, 0.5) or 0) * 1e3, "p99": (pct(lat, 0.99) or 0) * 1e3,
            "bad": bad[0], "errors": str(errors[0]) if errors[0] else "", "tool": "python"}
