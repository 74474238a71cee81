"""Bare fan-out sender: N group_send() calls, paced at RATE/s (0 = as fast as it can), each stamped at send time.

  PYTHONPATH=bench/baselines DJANGO_SETTINGS_MODULE=chanproj.settings python bench/baselines/chansend.py N RATE OUT
Writes {"sent": [[task_id, version, t_monotonic], ...]}; messages look like Taskrunner's (task id and version).
"""
import asyncio
import json
import sys
import time

TASKS = 50


async def main(n: int, rate: float, out: str) -> None:
    import django

    django.setup()
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    sent = []
    t0 = time.monotonic()
    for i in range(n):
        if rate:
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        task_id, version = i % TASKS + 1, i // TASKS + 2
        t = time.monotonic()
        await layer.group_send("tasks", {"type": "task.update", "data": {
            "type": "task.updated", "task": {"id": task_id, "version": version, "status": "running"}}})
        sent.append([task_id, version, t])
    with open(out, "w") as f:
        json.dump({"sent": sent}, f)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]))
