"""P4's state-change sender for Taskrunner, one process: alternately cancels and retries its tasks through the services
(pending -> cancelled -> pending ...), each change a committed transition with its event published on commit.

  python -m bench.p4send COUNT RATE OUTFILE TASK_ID,TASK_ID,...   (RATE 0: as fast as it can)
Prints READY after Django is set up, starts on a line from stdin. The commit time of each change is taken by an
on_commit callback registered before the service's own, so it is stamped right after COMMIT returns and before the
event is rendered and handed to the publisher. Writes {"sent": [[task_id, version, t_commit], ...]}.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    import django

    django.setup()
    from django.db import transaction

    from tasks import services
    from tasks.models import Task

    count, rate, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    ids = [int(x) for x in sys.argv[4].split(",")]
    status = dict(Task.objects.filter(pk__in=ids).values_list("pk", "status"))
    from tasks import realtime

    # Warm-up outside the measurement: templates compiled, serializer built, the publisher's loop and Redis connected.
    realtime.task_updated_event(Task.objects.select_related("owner").get(pk=ids[0]))
    realtime.publisher.send([("bench-warm-up", {"type": "bench.warm_up"})])
    realtime.publisher.flush(10)
    print("READY", flush=True)
    sys.stdin.readline()
    sent = []
    t0 = time.monotonic()
    for i in range(count):
        if rate:
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        task_id = ids[i % len(ids)]
        stamp = []
        with transaction.atomic():
            transaction.on_commit(lambda: stamp.append(time.monotonic()))
            if status[task_id] == "pending":
                task = services.task_cancel(task_id=task_id)
            else:
                task = services.task_retry(task_id=task_id)
        status[task_id] = task.status
        sent.append([task_id, task.version, stamp[0]])
    realtime.publisher.flush(10)
    with open(out, "w") as f:
        json.dump({"sent": sent}, f)


if __name__ == "__main__":
    main()
