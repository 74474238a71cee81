"""Issue 3's acceptance run: two browsers watch the dashboard while tasks are created through the API and the CLI;
every change reaches both pages; after the Redis server restarts (nothing kept) mid-run, both pages come back to the
database's state on their own.

Everything runs against a private Redis server (so restarting it disturbs nothing else on the machine): daphne, two
worker processes and the CLI use it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest
from playwright.sync_api import expect

from tasks.models import Task
from tests.support import ROOT, child_env, free_port, start_daphne, start_worker, wait_for

from .conftest import _port_open, wait_live

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def private_redis(tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"

    def start():
        subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(port), "--save",
                        "", "--appendonly", "no", "--dir", str(tmp_path)], check=True, capture_output=True)
        wait_for(lambda: _port_open(port), timeout=10, message="redis to listen")

    def stop():
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True)
        wait_for(lambda: not _port_open(port), timeout=10, message="redis to stop")

    start()
    yield type("PrivateRedis", (), {"url": url, "start": staticmethod(start), "stop": staticmethod(stop)})
    stop()


def api_create(base_url: str, token: str, name: str, execution_time: float) -> int:
    body = json.dumps({"name": name, "task_type": "always_succeeds", "execution_time": execution_time}).encode()
    request = urllib.request.Request(f"{base_url}/api/tasks/", data=body, method="POST", headers={
        "Authorization": f"Token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # nosec B310: our own test server
        return json.load(response)["id"]


def cli_create(database_name: str, redis_url: str, name: str, execution_time: float) -> int:
    result = subprocess.run(
        [sys.executable, "manage.py", "create_task", name, "--type", "always_succeeds", "--time",
         str(execution_time), "--owner", "alice"],
        cwd=ROOT, env=child_env(database_name, REDIS_URL=redis_url), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return Task.objects.get(name=name).pk


def shows(page, task: Task) -> bool:
    row = page.locator(f"#task-{task.pk}")
    return (row.count() == 1 and row.get_attribute("data-status") == task.status
            and int(row.get_attribute("data-version")) == task.version)


def test_two_browsers_follow_api_and_cli_tasks_and_recover_after_a_redis_restart(
        transactional_db, test_database_name, tmp_path, browser, user, private_redis):
    from django.conf import settings
    from django.test import Client
    from rest_framework.authtoken.models import Token

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {"REDIS_URL": private_redis.url, "DJANGO_ALLOW_ASYNC_UNSAFE": ""}
    daphne = start_daphne(test_database_name, tmp_path, port, **env)
    workers = start_worker(test_database_name, tmp_path, processes=2, **env)
    try:
        wait_for(lambda: _port_open(port), timeout=30, message="daphne to listen")
        client = Client()
        client.force_login(user)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
        pages = []
        for _ in range(2):
            context = browser.new_context(base_url=base_url, viewport={"width": 1360, "height": 900})
            context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": base_url}])
            page = context.new_page()
            page.goto("/")
            wait_live(page)
            pages.append(page)
        token = Token.objects.create(user=user).key

        first = [api_create(base_url, token, "from the API", 1), cli_create(test_database_name, private_redis.url,
                                                                             "from the CLI", 1)]
        for page in pages:
            for task_id in first:
                expect(page.locator(f"#task-{task_id}")).to_have_attribute("data-status", "completed",
                                                                           timeout=15_000)

        # Long enough to be running when Redis goes away.
        second = [api_create(base_url, token, f"through the restart {i}", 4) for i in range(3)]
        wait_for(lambda: Task.objects.filter(pk__in=second, status="running").exists(), timeout=20,
                 message="a task running before the restart")
        private_redis.stop()
        time.sleep(1)
        private_redis.start()
        after = api_create(base_url, token, "after the restart", 0)

        ids = first + second + [after]
        wait_for(lambda: not Task.objects.filter(pk__in=ids, status__in=["pending", "running"]).exists(),
                 timeout=90, message="every task to finish after the restart")
        final = list(Task.objects.filter(pk__in=ids))
        assert {task.status for task in final} == {"completed"}
        for page in pages:
            wait_for(lambda page=page: all(shows(page, task) for task in final), timeout=30, interval=0.5,
                     message="the page to show the database's state")
            expect(page.locator('#counts [data-count="completed"]')).to_have_text(str(len(ids)))
            expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
    finally:
        workers.stop()
        daphne.stop()
