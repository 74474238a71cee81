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

from taskrunner_project.settings import *  # noqa: E402,F401,F403
