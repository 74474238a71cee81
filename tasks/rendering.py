"""HTML fragments shared by the pages and their live updates.

A page renders these partials on first load; tasks.realtime renders the same partials once per event and ships the
HTML inside the event, so every open page swaps in exactly what a reload would show, without one render per viewer.
"""

from django.template.loader import render_to_string


def task_fragments(task) -> dict[str, str]:
    return {
        "row": render_to_string("tasks/partials/task_row.html", {"task": task}),
        "summary": render_to_string("tasks/partials/task_summary.html", {"task": task}),
    }


def log_fragment(log) -> str:
    return render_to_string("tasks/partials/log_line.html", {"log": log})
