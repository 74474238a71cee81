"""End-to-end fixtures: a real daphne and a real RQ worker (subprocesses) against the transactional test database, and
headless Chromium driven by Playwright (sync API). Browsers are never downloaded: the system Chromium is used."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from tests.support import ROOT, free_port, start_daphne, wait_for

CHROMIUM = os.environ.get("TASKRUNNER_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
PASSWORDS = {"alice": "alice-password-123", "bob": "bob-password-123", "carol": "carol-password-123"}


@pytest.fixture(autouse=True)
def _sync_orm_next_to_playwright(monkeypatch):
    """Playwright's sync API runs an event loop in this thread; the test's own ORM calls (creating users and tasks)
    are still plain synchronous code, so Django's async-safety guard is relaxed, for these tests only."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Server:
    """A daphne serving the app on a fixed free port; it can be stopped and started again on that port."""

    def __init__(self, database_name: str, tmp_path: Path):
        self.database_name = database_name
        self.tmp_path = tmp_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log_dir = self.tmp_path if self.runs == 1 else self.tmp_path / f"restart-{self.runs}"
        log_dir.mkdir(exist_ok=True)
        # The relaxed async-safety guard of this process must not leak into the server (an RQ worker has no loop).
        self.process = start_daphne(self.database_name, log_dir, self.port, DJANGO_ALLOW_ASYNC_UNSAFE="")
        process = self.process
        wait_for(lambda: _port_open(self.port) or not process.alive(), timeout=30, message="daphne to listen")
        assert process.alive(), process.output()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@pytest.fixture
def server(transactional_db, test_database_name, tmp_path):
    server = Server(test_database_name, tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser, server):
    """open_page(user) -> a Page in a fresh browser context (a separate browser, as far as the app can tell).

    With sign_in_with_form=True the page signs in through the login form; otherwise the context gets a session cookie
    made the way Django's test client does it (password hashing is deliberately slow; the form is tested once)."""
    contexts = []

    def open_as(user, path="/", sign_in_with_form=False, viewport=None):
        context = browser.new_context(base_url=server.url, viewport=viewport or {"width": 1360, "height": 900})
        contexts.append(context)
        if not sign_in_with_form:
            client = Client()
            client.force_login(user)
            cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
            context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": server.url}])
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(path)
        if sign_in_with_form:
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            screenshot(page, "login.png")
            page.get_by_label("Username").fill(user.get_username())
            page.get_by_label("Password").fill(PASSWORDS[user.get_username()])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{server.url}{path}")
        wait_live(page)
        return page

    yield open_as
    for context in contexts:
        context.close()


def wait_live(page):
    """Wait until the page's socket is connected (the live indicator says so)."""
    page.locator('#live-indicator[data-state="live"]').wait_for()


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    return path
