"""REST endpoints: parse input, call a service or selector, serialize the result. No rules live here."""

import logging

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter, SearchFilter
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView
from django_filters.rest_framework import DjangoFilterBackend

from .. import selectors, services, task_types
from ..models import Task
from .filters import LogFilter, TaskFilter
from .pagination import LogPagination
from .serializers import (
    TaskActionSerializer, TaskCreateSerializer, TaskDetailSerializer, TaskLogSerializer, TaskSerializer,
    TaskTypeSerializer,
)

logger = logging.getLogger(__name__)

CONFLICT = OpenApiResponse(description="The task's status does not allow this action.")


class CreateThrottle(ScopedRateThrottle):
    """Limits task creation per user (TASKRUNNER_CREATE_RATE), counted in the shared (Redis) cache. Fails open: with
    the cache unreachable a create goes through (logged) rather than failing with a 500."""

    def allow_request(self, request, view):
        if view.action != "create":
            return True
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # the cache backend's connection errors have no common base class
            logger.warning("Create throttle skipped, cache unavailable: %r", exc)
            return True


@extend_schema_view(
    list=extend_schema(summary="List tasks", description="Newest first. Filter by status and task_type, search by "
                                                         "name, order by created_at, updated_at or name."),
    retrieve=extend_schema(summary="A task with its attempts"),
)
class TaskViewSet(mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                  viewsets.GenericViewSet):
    filter_backends = [DjangoFilterBackend, SearchFilter, OrderingFilter]
    filterset_class = TaskFilter
    search_fields = ["name"]
    ordering_fields = ["created_at", "updated_at", "name"]
    ordering = ["-created_at", "-id"]
    throttle_classes = [CreateThrottle]
    throttle_scope = "task_create"
    queryset = Task.objects.none()  # for schema generation; requests use get_queryset()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Task.objects.none()
        if self.action in ("retrieve",):
            return selectors.task_detail_queryset(user=self.request.user)
        return selectors.task_list(user=self.request.user)

    def get_serializer_class(self):
        if self.action == "create":
            return TaskCreateSerializer
        if self.action == "retrieve":
            return TaskDetailSerializer
        if self.action == "logs":
            return TaskLogSerializer
        return TaskSerializer

    @extend_schema(summary="Create a task", request=TaskCreateSerializer, responses={201: TaskSerializer})
    def create(self, request, *args, **kwargs):
        serializer = TaskCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        task = services.task_create(owner=request.user, **serializer.validated_data)
        return Response(TaskSerializer(task).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Retry a failed or cancelled task", request=TaskActionSerializer,
                   responses={200: TaskSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        return self._act(request, services.task_retry)

    @extend_schema(summary="Cancel a pending or running task", request=TaskActionSerializer,
                   responses={200: TaskSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return self._act(request, services.task_cancel)

    def _act(self, request, service):
        """A person's retry or cancel: the service decides; a refusal becomes 409 (api.exceptions)."""
        task = self.get_object()
        expected = self._expected_version(request)
        return Response(TaskSerializer(service(task_id=task.pk, actor=request.user, expected_version=expected)).data)

    @staticmethod
    def _expected_version(request) -> int | None:
        action_input = TaskActionSerializer(data=request.data)
        action_input.is_valid(raise_exception=True)
        return action_input.validated_data.get("version")

    @extend_schema(summary="A task's log lines, oldest first", responses={200: TaskLogSerializer(many=True)})
    @action(detail=True, methods=["get"], filter_backends=[DjangoFilterBackend], filterset_class=LogFilter,
            pagination_class=LogPagination)
    def logs(self, request, pk=None):
        task = get_object_or_404(selectors.task_list(user=request.user), pk=pk)  # DRF's: a malformed id is a 404
        queryset = self.filter_queryset(selectors.task_logs(task=task))
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(TaskLogSerializer(page, many=True).data)


class TaskTypeList(APIView):
    @extend_schema(summary="The registered task types", responses={200: TaskTypeSerializer(many=True)})
    def get(self, request):
        return Response(TaskTypeSerializer(task_types.all_types(), many=True).data)
