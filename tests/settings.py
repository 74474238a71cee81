"""Settings for the test run: the project's settings, read with test values in the environment.

pytest-django imports this before any conftest, so the environment is set here. Worker and server subprocesses get
the same values explicitly (tests.support.child_env).
"""

import os

os.environ["REDIS_URL"] = os.environ.get("TASKRUNNER_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("TASKRUNNER_RETRY_BACKOFF_BASE", "0.2")
os.environ.setdefault("TASKRUNNER_SWEEP_INTERVAL", "0.5")
os.environ.setdefault("TASKRUNNER_CREATE_RATE", "100000/minute")

os.environ.setdefault("TASKRUNNER_CHANNEL_PREFIX", "asgi-test")

from taskrunner_project.settings import *  # noqa: E402,F401,F403

# Several checkouts may run their suites on one machine at once: each picks its own test database (and Redis database
# and channel prefix above) through the environment.
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TASKRUNNER_TEST_DB", "test_taskrunner")}  # noqa: F405
