"""The benchmark suite still runs: `python -m bench --smoke` runs every benchmark once with tiny sizes against the real
stack (gunicorn, daphne, RQ worker pools, PostgreSQL, Redis). Nothing is asserted about speed: only that it completes
and prints its table with a figure for every benchmark.

It uses its own databases (<test database>_benchsmoke and ..._base), the test Redis database and a channel prefix of
its own, so it cannot disturb the development data or another checkout's run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.support import ROOT, TEST_REDIS_URL

BENCHMARKS = ("P1", "P2", "P3", "P4", "P5", "memory")


def test_bench_smoke_runs_every_benchmark_and_prints_figures(tmp_path):
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(
        BENCH_DB=f"{os.environ.get('TASKRUNNER_TEST_DB', 'test_taskrunner')}_benchsmoke",
        BENCH_REDIS_URL=TEST_REDIS_URL,
        BENCH_CHANNEL_PREFIX=f"{os.environ.get('TASKRUNNER_CHANNEL_PREFIX', 'asgi-test')}-benchsmoke",
        BENCH_RESULTS=str(tmp_path / "results"),
        BENCH_PYTHON=sys.executable,
    )
    done = subprocess.run([sys.executable, "-m", "bench", "--smoke"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    table = output.split("## Results", 1)[1]
    for name in BENCHMARKS:
        rows = [line for line in table.splitlines() if line.startswith(f"| {name} ")]
        assert rows, f"no {name} row in:\n{table}"
        assert any(re.search(r"\|\s+\d+(\.\d+)?\s+(\(|\|)", row) for row in rows), f"no figure for {name}:\n{table}"
    assert "FAILED" not in output, output[-6000:]
