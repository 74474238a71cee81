"""Django settings for Taskrunner.

Everything that differs between machines is read from the environment (see .env.example). The defaults are for
development: local PostgreSQL (database "taskrunner") and local Redis, DEBUG on. Without DEBUG, a missing SECRET_KEY
stops start-up: production never runs on a development key.
"""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Production (DEBUG off) refuses to start without a real secret key: "
            "set SECRET_KEY in the environment, e.g. to the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
        )
    SECRET_KEY = "django-insecure-development-only-key-never-used-when-debug-is-off"  # nosec B105: dev only

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "channels",
    "django_rq",
    "tasks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "taskrunner_project.urls"
ASGI_APPLICATION = "taskrunner_project.asgi.application"
WSGI_APPLICATION = "taskrunner_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: PostgreSQL through psycopg 3 -------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/taskrunner")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0, conn_health_checks=False)}
if env_bool("DATABASE_POOL", True):
    # Django's psycopg pool: a request borrows a warm connection instead of paying ~5 ms to open one (see
    # ../shared/anchors: a fresh connection per request costs 35% to 5x in throughput).
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DATABASE_POOL_MIN_SIZE", 2),
        "max_size": env_int("DATABASE_POOL_MAX_SIZE", 20),
        "timeout": env_float("DATABASE_POOL_TIMEOUT", 10.0),
    }
    # With the pool, Django's health checks make the pool check a connection as it leaves it: after a PostgreSQL
    # restart, dead connections are replaced instead of failing one request (or job) each.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ATOMIC_REQUESTS = False  # services own their transactions

# --- Redis: RQ queues and the Channels layer -------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

RQ = {"COMMIT_MODE": "on_db_commit"}
RQ_QUEUES = {
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600 * 2},
}

CHANNEL_LAYERS = {
    "default": {
        # The pub/sub layer: publishing is one PUBLISH per group (cheap for workers), nothing is silently dropped
        # at a per-channel capacity (the default layer lost 81% of a burst in ../shared/anchors), and it had the
        # lowest latency there.
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": env_str("TASKRUNNER_CHANNEL_PREFIX", "asgi")},
    }
}

# --- Auth -----------------------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# --- Internationalisation and static files ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- REST framework and OpenAPI ---------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so an anonymous request gets 401 with a WWW-Authenticate header rather than 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "tasks.api.pagination.TaskPagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "tasks.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "tasks.api.exceptions.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"task_create": env_str("TASKRUNNER_CREATE_RATE", "600/minute")},
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Taskrunner API",
    "DESCRIPTION": "Create background tasks, follow their attempts and logs, retry and cancel them.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "TaskStatusEnum": "tasks.models.TaskStatus",
        "AttemptStatusEnum": "tasks.models.AttemptStatus",
        "LogLevelEnum": "tasks.models.LogLevel",
    },
}

# --- Taskrunner -------------------------------------------------------------------------------------------------------
TASKRUNNER_MAX_EXECUTION_TIME = env_int("TASKRUNNER_MAX_EXECUTION_TIME", 3600)
TASKRUNNER_DEFAULT_MAX_ATTEMPTS = 3
TASKRUNNER_FAILURE_RATE = env_float("TASKRUNNER_FAILURE_RATE", 0.3)
TASKRUNNER_RANDOM_SEED = env_str("TASKRUNNER_RANDOM_SEED", "")  # set it for reproducible simulated failures
# Retry backoff: base * 2**(attempt-1), capped, times a random factor in [1 - jitter, 1 + jitter].
TASKRUNNER_RETRY_BACKOFF_BASE = env_float("TASKRUNNER_RETRY_BACKOFF_BASE", 1.0)
TASKRUNNER_RETRY_BACKOFF_MAX = env_float("TASKRUNNER_RETRY_BACKOFF_MAX", 60.0)
TASKRUNNER_RETRY_JITTER = env_float("TASKRUNNER_RETRY_JITTER", 0.25)
TASKRUNNER_HEARTBEAT_INTERVAL = env_float("TASKRUNNER_HEARTBEAT_INTERVAL", 2.0)
TASKRUNNER_HEARTBEAT_TIMEOUT = env_float("TASKRUNNER_HEARTBEAT_TIMEOUT", 30.0)
# A running attempt whose heartbeat is older than this is shown as "stale" (before it is recovered as lost).
TASKRUNNER_STALE_AFTER = env_float("TASKRUNNER_STALE_AFTER", 10.0)
TASKRUNNER_SWEEP_INTERVAL = env_float("TASKRUNNER_SWEEP_INTERVAL", 1.0)
TASKRUNNER_PROGRESS_INTERVAL = env_float("TASKRUNNER_PROGRESS_INTERVAL", 0.25)
TASKRUNNER_QUEUE = env_str("TASKRUNNER_QUEUE", "default")
# An attempt's RQ timeout: execution_time * factor + slack seconds. Past it the attempt fails like any other failure.
TASKRUNNER_JOB_TIMEOUT_FACTOR = env_float("TASKRUNNER_JOB_TIMEOUT_FACTOR", 2.0)
TASKRUNNER_JOB_TIMEOUT_SLACK = env_float("TASKRUNNER_JOB_TIMEOUT_SLACK", 60.0)

# --- Security (production) -------------------------------------------------------------------------------------------
# `DEBUG=0 SECRET_KEY=... ALLOWED_HOSTS=example.com manage.py check --deploy` prints no warning with these defaults
# (tests/test_security.py checks it). Behind a TLS-terminating proxy: set SECURE_PROXY_SSL_HEADER=1 if the proxy sets
# X-Forwarded-Proto (and strips it from clients), or SECURE_SSL_REDIRECT=0 if the proxy redirects to HTTPS itself.
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
# "preload" only consents to the browsers' preload list; nothing is submitted. Set SECURE_HSTS_PRELOAD=0 for a domain
# whose subdomains cannot all serve HTTPS.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto. Opt-in: trusting the header without such a proxy
    # would let any client claim HTTPS.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Request bodies: JSON (a body nested too deeply is a 400, not a RecursionError 500) and HTML forms. No multipart:
# nothing is uploaded, and daphne (Twisted) answers a malformed multipart body itself with an empty 400.
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = ["tasks.api.parsers.JSONParser", "rest_framework.parsers.FormParser"]

# The API schema and its docs pages are for signed-in users and token holders, like the API itself.
SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"] = ["rest_framework.permissions.IsAuthenticated"]

# DRF keeps throttle histories (task creation: TASKRUNNER_CREATE_RATE) in the default cache. A per-process memory cache
# would give every daphne process its own budget, so the cache is Redis, shared by all processes.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("CACHE_URL", REDIS_URL),
        "KEY_PREFIX": "taskrunner",
        "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 1.0},
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
