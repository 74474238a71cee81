"""Baselines measured in the same run: what a user would otherwise run (after ../shared/anchors, re-implemented here
so the bench and its smoke mode need nothing outside the repository).

- noop.py      the bare RQ no-op job (`rq worker-pool -n 2` runs it)
- drfproj/     a plain DRF list/create project (model plaindrf.Item) for gunicorn 2 sync workers, pooled connections
- chanproj/    bare Channels fan-out: one consumer joining group "tasks", forwarding every event (PubSub layer)
- chansend.py  the fan-out sender (group_send in a loop, paced or as fast as it can)
"""
