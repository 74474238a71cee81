from django.urls import path

from .consumers import TaskEventsConsumer

websocket_urlpatterns = [
    path("ws/tasks/", TaskEventsConsumer.as_asgi()),
]
