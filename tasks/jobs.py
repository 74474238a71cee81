"""The RQ entry points. They take ids and call tasks.execution and services; nothing else lives here.

Services enqueue `tasks.jobs.run_attempt` by its dotted name (see tasks.queueing), so neither module imports the other.
"""

from django.db import close_old_connections

from . import execution


def run_attempt(task_id: int, attempt_number: int) -> str:
    # Like a request: drop connections the database closed (a restart, a timeout) before and after the work.
    close_old_connections()
    try:
        return execution.run_attempt(task_id, attempt_number)
    finally:
        close_old_connections()
