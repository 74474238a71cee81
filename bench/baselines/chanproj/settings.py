"""Bare Channels (as ../shared/anchors/channels_fanout.py) with the layer Taskrunner uses: RedisPubSubChannelLayer."""
import os

SECRET_KEY = "bench-baseline"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = ["channels", "chanproj"]
ASGI_APPLICATION = "chanproj.asgi.application"
DATABASES = {}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                              "CONFIG": {"hosts": [os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")],
                                         "prefix": os.environ.get("BENCH_CHANNEL_PREFIX", "asgi-bench-base")}}}
