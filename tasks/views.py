"""Server-rendered pages. Thin: they call selectors and services, and render the shared partials."""

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render

from . import selectors


@login_required
def dashboard(request):
    tasks = selectors.task_list(user=request.user)[:50]
    return render(request, "tasks/dashboard.html", {"tasks": tasks,
                                                    "counts": selectors.task_status_counts(user=request.user)})


@login_required
def task_detail(request, task_id: int):
    task = selectors.task_get(user=request.user, task_id=task_id)
    if task is None:
        raise Http404("No such task.")
    return render(request, "tasks/task_detail.html", {"task": task, "logs": selectors.task_logs(task=task)})
