"""Server-rendered pages. Thin: they parse the request, call selectors and services, and render the shared partials.

Each page has a "live" fragment (the part that changes while tasks run). htmx requests that target it, and the live
client's resyncs (after a reconnect, a version gap, or while polling), get just that fragment, drawn by the same
partials as the full page and as the socket's events.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from . import lifecycle, rendering, selectors, services, task_types
from .forms import TaskCreateForm
from .models import TaskStatus

PAGE_SIZE = 25
LIVE_DASHBOARD = "live-region"
LIVE_DETAIL = "task-live"


def _filters(request) -> dict[str, str]:
    status = request.GET.get("status", "")
    task_type = request.GET.get("type", "")
    return {
        "status": status if status in TaskStatus.values else "",
        "type": task_type if task_type in task_types.names() else "",
        "q": request.GET.get("q", "").strip()[:200],
    }


def _count_links(filters: dict[str, str], counts: dict[str, int]) -> list[dict]:
    """The count cards double as status filters: each links to the current filters with its status."""
    keep = QueryDict(mutable=True)
    for key in ("type", "q"):
        if filters[key]:
            keep[key] = filters[key]
    links = []
    for value, label in [("", "All"), *TaskStatus.choices]:
        query = keep.copy()
        if value:
            query["status"] = value
        links.append({"status": value or "total", "label": label, "n": counts[value or "total"],
                      "href": f"?{query.urlencode()}", "active": filters["status"] == value})
    return links


def _dashboard_context(request, form=None) -> dict:
    synced_at = timezone.now()  # the live client counts only changes made after this snapshot
    filters = _filters(request)
    tasks = selectors.task_list(user=request.user, status=filters["status"] or None,
                                task_type=filters["type"] or None, search=filters["q"] or None)
    counts = selectors.task_status_counts(user=request.user)
    paginator = Paginator(tasks, PAGE_SIZE)
    if not filters["type"] and not filters["q"]:
        # The per-status counts already answer "how many rows": skip the paginator's second COUNT over every task.
        paginator.count = counts[filters["status"] or "total"]
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return {
        "page": page,
        "tasks": page.object_list,
        "filters": filters,
        "filter_query": query.urlencode(),
        "counts": counts,
        "count_links": _count_links(filters, counts),
        "statuses": TaskStatus.choices,
        "types": task_types.all_types(),
        "page_size": PAGE_SIZE,
        "synced_at": synced_at,
        "form": form or TaskCreateForm(),
    }


@login_required
@require_GET
def dashboard(request):
    context = _dashboard_context(request)
    if request.htmx and request.htmx.target == LIVE_DASHBOARD:
        return render(request, "tasks/partials/dashboard_live.html", context)
    return render(request, "tasks/dashboard.html", context)


@login_required
@require_POST
def task_create(request):
    form = TaskCreateForm(request.POST)
    task = form.save(owner=request.user) if form.is_valid() else None
    if request.htmx:
        if task is None:
            return render(request, "tasks/partials/create_form.html", {"form": form})
        response = render(request, "tasks/partials/create_form.html", {"form": TaskCreateForm()})
        return trigger_client_event(response, "task-created", {"id": task.pk, "message": f"“{task.name}” queued."})
    if task is None:
        return render(request, "tasks/dashboard.html", _dashboard_context(request, form))
    messages.success(request, f"“{task.name}” queued.")
    return redirect("dashboard")


def _visible_task(request, task_id: int):
    task = selectors.task_get(user=request.user, task_id=task_id)
    if task is None:
        raise Http404("No such task.")  # another user's task does not exist for this user
    return task


@login_required
@require_GET
def task_detail(request, task_id: int):
    task = _visible_task(request, task_id)
    context = rendering.summary_context(task)
    if request.htmx and request.htmx.target == LIVE_DETAIL:
        return render(request, "tasks/partials/detail_live.html", context)
    return render(request, "tasks/task_detail.html", {**context, "logs": selectors.task_logs(task=task)})


@login_required
@require_GET
def task_log(request, task_id: int):
    """Log lines after ?after=<log id>: the live client's catch-up after a reconnect or while polling."""
    task = _visible_task(request, task_id)
    after = request.GET.get("after", "")
    logs = selectors.task_logs(task=task, after_id=int(after) if after.isdigit() else None)
    return render(request, "tasks/partials/log_lines.html", {"logs": logs})


def _act(request, task_id: int, service, done: str):
    """Run a retry or cancel; a refusal (the status does not allow it) answers 409 with the reason."""
    if not selectors.task_is_visible(user=request.user, task_id=task_id):
        raise Http404("No such task.")
    try:
        task = service(task_id=task_id, actor=request.user)
    except lifecycle.InvalidTransition as refused:
        if request.htmx:
            return HttpResponse(str(refused), status=409, content_type="text/plain; charset=utf-8")
        messages.error(request, str(refused))
        return redirect("task-detail", task_id=task_id)
    if request.htmx:
        return HttpResponse(status=204)  # the new state arrives over the socket (or the next poll)
    messages.success(request, f"“{task.name}” {done}.")
    return redirect("task-detail", task_id=task_id)


@login_required
@require_POST
def task_cancel(request, task_id: int):
    return _act(request, task_id, services.task_cancel, "cancelled")


@login_required
@require_POST
def task_retry(request, task_id: int):
    return _act(request, task_id, services.task_retry, "queued for a retry")
