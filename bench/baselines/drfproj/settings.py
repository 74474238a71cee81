"""A plain DRF project (as ../shared/anchors/http_drf.py): no auth, two middleware, JSON only, pooled connections."""
import os

SECRET_KEY = "bench-baseline"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework", "plaindrf"]
MIDDLEWARE = ["django.middleware.security.SecurityMiddleware", "django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "drfproj.urls"
_pg = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432").split("://", 1)[1]
_user, _hostport = _pg.split("@", 1)
_host, _port = (_hostport.split(":") + ["5432"])[:2]
DATABASES = {"default": {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": os.environ.get("BENCH_BASE_DB", "taskrunner_bench_base"),
    "USER": _user.split(":")[0],
    "PASSWORD": _user.split(":")[1] if ":" in _user else "",
    "HOST": _host,
    "PORT": _port,
    "OPTIONS": {"pool": {"min_size": 2, "max_size": 16}},
}}
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
