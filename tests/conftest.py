"""Shared fixtures: users, API clients, real Redis (a dedicated test database, flushed per test), real RQ workers."""

from __future__ import annotations

import pytest

from tests.support import TEST_REDIS_URL


@pytest.fixture(autouse=True)
def redis_conn():
    """The test Redis database, empty at the start of every test."""
    import redis

    conn = redis.Redis.from_url(TEST_REDIS_URL)
    conn.flushdb()
    yield conn
    conn.close()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-password-123")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-password-123")


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user("carol", password="carol-password-123", is_staff=True)


@pytest.fixture
def api_client(user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def make_task(user):
    """Create a task through the service, as every interface does."""
    from tasks import services

    def make(owner=None, **fields):
        fields.setdefault("name", "a task")
        fields.setdefault("task_type", "always_succeeds")
        fields.setdefault("execution_time", "0")
        return services.task_create(owner=owner or user, **fields)

    return make


@pytest.fixture
def test_database_name():
    from django.db import connection

    return connection.settings_dict["NAME"]


@pytest.fixture
def worker(transactional_db, test_database_name, tmp_path):
    """Start real `rqworker` processes against the test database; all are stopped after the test."""
    from tests.support import start_worker

    started = []

    def start(**kwargs):
        kwargs.setdefault("name", f"worker{len(started)}")
        process = start_worker(test_database_name, tmp_path, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def pytest_runtest_makereport(item, call):
    """Print the logs of the worker processes a failing test started."""
    if call.when == "call" and call.excinfo is not None:
        tmp = item.funcargs.get("tmp_path")
        if tmp is not None:
            for log in sorted(tmp.glob("*.log")):
                text = log.read_text(errors="replace")[-4000:]
                item.add_report_section("call", log.name, text)
