from django.urls import path
from rest_framework.routers import DefaultRouter

from .views import TaskTypeList, TaskViewSet

router = DefaultRouter()
router.register("tasks", TaskViewSet, basename="task")

urlpatterns = [
    path("task-types/", TaskTypeList.as_view(), name="task-types"),
    *router.urls,
]
