"""HTML fragments shared by the pages and their live updates.

A page renders these partials on first load; tasks.realtime renders the same partials once per event and ships the
HTML inside the event, so every open page swaps in exactly what a reload would show, without one render per viewer.
The fragments depend only on the task (never on the viewer: no user, no CSRF token; pages send the token in a
header), and rendering them runs no query: the task arrives with its owner, a log line with its attempt.
"""

from django.template.loader import render_to_string

from . import lifecycle


def summary_context(task) -> dict:
    """What the summary partial needs: the task and which actions its status allows (the lifecycle decides)."""
    return {
        "task": task,
        "can_cancel": task.status in lifecycle.CANCELLABLE,
        "can_retry": task.status in lifecycle.RETRYABLE,
    }


def task_fragments(task) -> dict[str, str]:
    return {
        "row": render_to_string("tasks/partials/task_row.html", {"task": task}),
        "summary": render_to_string("tasks/partials/task_summary.html", summary_context(task)),
    }


def log_fragment(log) -> str:
    return render_to_string("tasks/partials/log_line.html", {"log": log})
