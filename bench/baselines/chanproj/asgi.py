import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chanproj.settings")
from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from chanproj.consumers import TaskConsumer  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_asgi,
    "websocket": URLRouter([path("ws/tasks/", TaskConsumer.as_asgi())]),
})
