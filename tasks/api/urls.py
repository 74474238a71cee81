from django.http import JsonResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt
from rest_framework.routers import DefaultRouter

from .views import TaskTypeList, TaskViewSet

router = DefaultRouter()
router.register("tasks", TaskViewSet, basename="task")


@csrf_exempt  # it changes nothing, whatever the method
def not_found(request, rest):
    """Any other URL under /api/ (e.g. /api/tasks/0.5/): a JSON 404 like the API's own, not Django's HTML page.
    Only URLs ending in a slash, so that APPEND_SLASH still redirects /api/tasks to /api/tasks/."""
    return JsonResponse({"detail": "Not found."}, status=404)


urlpatterns = [
    path("task-types/", TaskTypeList.as_view(), name="task-types"),
    *router.urls,
    re_path(r"^(?P<rest>.*/)$", not_found),
]
