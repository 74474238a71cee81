"""API security and bad input: CSRF, token auth, anonymous access, other users' tasks, throttling, validation, and the
production settings (check --deploy, the secret key)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tasks import services, task_types
from tasks.api.views import CreateThrottle
from tests.support import ROOT

pytestmark = pytest.mark.django_db

VALID = {"name": "nightly report", "task_type": "always_succeeds", "execution_time": "1.5"}


def session_client(username: str, password: str, *, csrf: bool = True) -> APIClient:
    client = APIClient(enforce_csrf_checks=csrf)
    assert client.login(username=username, password=password)
    return client


def token_client(user) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def csrf_token(client: APIClient) -> str:
    """The token a page would carry: the dashboard renders it, which sets the csrftoken cookie."""
    assert client.get("/").status_code == 200
    return client.cookies[settings.CSRF_COOKIE_NAME].value


# --- CSRF and authentication -------------------------------------------------------------------------------------------

def test_session_writes_need_the_csrf_token(user, make_task):
    client = session_client("alice", "alice-password-123")
    response = client.post("/api/tasks/", VALID, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]

    task = make_task()
    for action in ("cancel", "retry"):
        assert client.post(f"/api/tasks/{task.pk}/{action}/").status_code == 403

    token = csrf_token(client)
    response = client.post("/api/tasks/", VALID, format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.content
    assert client.post(f"/api/tasks/{task.pk}/cancel/", HTTP_X_CSRFTOKEN=token).status_code == 200
    # Reads need no token.
    assert client.get("/api/tasks/").status_code == 200


def test_a_wrong_csrf_token_is_refused(user):
    client = session_client("alice", "alice-password-123")
    csrf_token(client)
    response = client.post("/api/tasks/", VALID, format="json", HTTP_X_CSRFTOKEN="x" * 32)
    assert response.status_code == 403


def test_token_auth_needs_no_csrf(user):
    client = token_client(user)
    response = client.post("/api/tasks/", VALID, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["owner"] == "alice"
    assert client.get("/api/tasks/").json()["count"] == 1


def test_a_wrong_token_is_401(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    response = client.get("/api/tasks/")
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid token."


def anonymous_requests(task_id: int):
    return [
        ("get", "/api/tasks/"),
        ("post", "/api/tasks/"),
        ("get", f"/api/tasks/{task_id}/"),
        ("get", f"/api/tasks/{task_id}/logs/"),
        ("post", f"/api/tasks/{task_id}/retry/"),
        ("post", f"/api/tasks/{task_id}/cancel/"),
        ("get", "/api/task-types/"),
        # Decision: the schema and its docs pages are for signed-in users and token holders, like the API.
        ("get", "/api/schema/"),
        ("get", "/api/docs/"),
        ("get", "/api/redoc/"),
    ]


def test_anonymous_gets_401_everywhere(make_task):
    task = make_task()
    client = APIClient()
    for method, url in anonymous_requests(task.pk):
        response = getattr(client, method)(url, VALID if method == "post" else None, format="json")
        assert response.status_code == 401, (method, url, response.status_code)
        assert response["WWW-Authenticate"] == 'Token', (method, url)
    # Nothing was created or changed.
    task.refresh_from_db()
    assert (task.status, task.version) == ("pending", 1)


def test_schema_and_docs_work_when_signed_in(user):
    client = token_client(user)
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/tasks/" in response.content
    browser = session_client("alice", "alice-password-123")
    assert browser.get("/api/docs/").status_code == 200


# --- Another user's task -----------------------------------------------------------------------------------------------

def test_another_users_task_is_404_for_read_and_write(user, other_user, make_task):
    task = make_task()
    bob = token_client(other_user)
    for method, url in [
        ("get", f"/api/tasks/{task.pk}/"),
        ("get", f"/api/tasks/{task.pk}/logs/"),
        ("post", f"/api/tasks/{task.pk}/cancel/"),
        ("post", f"/api/tasks/{task.pk}/retry/"),
    ]:
        response = getattr(bob, method)(url)
        assert response.status_code == 404, (method, url, response.content)
        assert response.json() == {"detail": "No Task matches the given query."} or "Not found" in str(
            response.json()
        )
    assert bob.get("/api/tasks/").json()["count"] == 0
    assert bob.get("/api/tasks/", {"search": "a task"}).json()["count"] == 0
    task.refresh_from_db()
    assert (task.status, task.version) == ("pending", 1), "bob's requests changed nothing"


def test_staff_can_read_and_act_on_every_task(user, staff_user, make_task):
    task = make_task()
    carol = token_client(staff_user)
    assert carol.get("/api/tasks/").json()["count"] == 1
    assert carol.get(f"/api/tasks/{task.pk}/").json()["owner"] == "alice"
    assert carol.get(f"/api/tasks/{task.pk}/logs/").status_code == 200
    response = carol.post(f"/api/tasks/{task.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    response = carol.post(f"/api/tasks/{task.pk}/retry/")
    assert response.status_code == 200 and response.json()["status"] == "pending"
    logs = [line["message"] for line in carol.get(f"/api/tasks/{task.pk}/logs/").json()["results"]]
    assert any("by carol" in message for message in logs)


# --- Throttling ----------------------------------------------------------------------------------------------------------

@pytest.fixture
def create_rate(monkeypatch):
    """DRF reads DEFAULT_THROTTLE_RATES once, into the throttle class: patch the class attribute."""

    def set_rate(rate: str):
        monkeypatch.setattr(CreateThrottle, "THROTTLE_RATES", {"task_create": rate})

    return set_rate


def test_creation_is_throttled_with_retry_after(user, other_user, create_rate):
    create_rate("3/minute")
    client = token_client(user)
    for _ in range(3):
        assert client.post("/api/tasks/", VALID, format="json").status_code == 201
    response = client.post("/api/tasks/", VALID, format="json")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert "throttled" in response.json()["detail"].lower()
    assert client.get("/api/tasks/").json()["count"] == 3, "the refused request created nothing"

    # Reads and other users are not affected.
    assert client.get("/api/tasks/").status_code == 200
    assert client.get("/api/task-types/").status_code == 200
    assert token_client(other_user).post("/api/tasks/", VALID, format="json").status_code == 201


def test_throttle_state_is_in_the_shared_redis_cache(user, create_rate, redis_conn, settings):
    """Every web process must count against one budget: DRF throttles use the default cache, which is Redis."""
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert CreateThrottle.cache is cache  # django.core.cache.cache: the "default" alias
    create_rate("2/minute")
    client = token_client(user)
    client.post("/api/tasks/", VALID, format="json")
    client.post("/api/tasks/", VALID, format="json")
    history = cache.get(f"throttle_task_create_{user.pk}")
    assert len(history) == 2
    assert any(b"throttle_task_create" in key for key in redis_conn.keys("*")), "the history lives in Redis"

    # Another process (simulated: the cache emptied as a fresh process would not see a local memory) shares it:
    # what counts is the Redis key, so deleting it there gives the budget back.
    assert client.post("/api/tasks/", VALID, format="json").status_code == 429
    redis_conn.delete(*[key for key in redis_conn.keys("*") if b"throttle_task_create" in key])
    assert client.post("/api/tasks/", VALID, format="json").status_code == 201


def test_creation_goes_through_when_the_cache_is_down(user, create_rate, settings):
    """The throttle fails open: Redis unreachable must not turn task creation into a 500."""
    create_rate("1/minute")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0",
                                   "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}}}
    client = token_client(user)
    assert client.post("/api/tasks/", VALID, format="json").status_code == 201
    assert client.post("/api/tasks/", VALID, format="json").status_code == 201


def test_the_create_rate_comes_from_the_environment():
    code = ("import django, os; django.setup(); from django.conf import settings; "
            "print(settings.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']['task_create'])")
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="taskrunner_project.settings", TASKRUNNER_CREATE_RATE="7/hour")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "7/hour"


# --- Bad input -----------------------------------------------------------------------------------------------------------

def post(client, body, **kwargs):
    kwargs.setdefault("format", "json")
    response = client.post("/api/tasks/", body, **kwargs)
    assert response.status_code != 500
    return response


BAD_FIELDS = [
    # (body changes, field with the error, words the message must contain)
    ({"name": ""}, "name", "blank"),
    ({"name": "   "}, "name", "blank"),  # trimmed first
    ({"name": "x" * 201}, "name", "200"),
    ({"name": None}, "name", "null"),
    ({"name": ["a"]}, "name", "valid string"),
    ({"name": {"a": 1}}, "name", "valid string"),
    ({"task_type": "no_such_type"}, "task_type", "Valid types"),
    ({"task_type": ""}, "task_type", "blank"),
    ({"task_type": 5}, "task_type", "Valid types"),
    ({"execution_time": "abc"}, "execution_time", "number"),
    ({"execution_time": -1}, "execution_time", "greater than or equal to 0"),
    ({"execution_time": 3601}, "execution_time", "from 0 to 3600"),
    ({"execution_time": 10 ** 30}, "execution_time", "digits"),
    ({"execution_time": "1e309"}, "execution_time", "digits"),
    ({"execution_time": "NaN"}, "execution_time", "number"),
    ({"execution_time": "Infinity"}, "execution_time", "number"),
    ({"execution_time": "1.2345"}, "execution_time", "decimal places"),
    ({"execution_time": True}, "execution_time", "number"),
    ({"execution_time": [1]}, "execution_time", "number"),
    ({"max_attempts": 0}, "max_attempts", "greater than or equal to 1"),
    ({"max_attempts": 11}, "max_attempts", "less than or equal to 10"),
    ({"max_attempts": 10 ** 30}, "max_attempts", "less than or equal to 10"),
    ({"max_attempts": "three"}, "max_attempts", "valid integer"),
    ({"max_attempts": 1.5}, "max_attempts", "valid integer"),
    ({"max_attempts": "1e3"}, "max_attempts", "valid integer"),
]


@pytest.mark.parametrize("changes,field,words", BAD_FIELDS, ids=[f"{c}" [:60] for c, _, _ in BAD_FIELDS])
def test_bad_fields_get_400_with_a_clear_message_for_that_field(user, changes, field, words):
    client = token_client(user)
    response = post(client, {**VALID, **changes})
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body, body
    message = " ".join(body[field])
    assert words.lower() in message.lower(), message
    assert client.get("/api/tasks/").json()["count"] == 0


def test_missing_fields_are_each_named(user):
    response = post(token_client(user), {})
    assert response.status_code == 400
    body = response.json()
    for field in ("name", "task_type", "execution_time"):
        assert body[field] == ["This field is required."]
    assert "max_attempts" not in body  # optional


def test_unknown_type_lists_the_valid_ones(user):
    response = post(token_client(user), {**VALID, "task_type": "rm -rf"})
    message = response.json()["task_type"][0]
    for name in task_types.names():
        assert name in message


def test_extra_fields_are_ignored_and_cannot_set_protected_state(user, other_user):
    body = {**VALID, "status": "completed", "owner": other_user.pk, "id": 999999, "version": 77, "attempts": 9,
            "progress": 100, "unknown": "x"}
    response = post(token_client(user), body)
    assert response.status_code == 201, response.content
    task = response.json()
    assert (task["status"], task["owner"], task["version"], task["attempts"], task["progress"]) == (
        "pending", "alice", 1, 0, 0)
    assert task["id"] != 999999


@pytest.mark.parametrize("content,content_type,status", [
    ("{not json", "application/json", 400),
    ('{"name": "x", "task_type": "always_succeeds", "execution_time": NaN}', "application/json", 400),
    ("[]", "application/json", 400),
    ("null", "application/json", 400),
    ('"a string"', "application/json", 400),
    ("", "application/json", 400),
    ("\xff\xfe", "application/json", 400),
    ("[" * 5000 + "]" * 5000, "application/json", 400),
    ("name=x&task_type=always_succeeds&execution_time=1", "text/plain", 415),
    ("<task><name>x</name></task>", "application/xml", 415),
    ("anything", "application/x-unknown", 415),
])
def test_malformed_bodies_and_content_types_are_refused_clearly(user, content, content_type, status):
    client = token_client(user)
    response = client.generic("POST", "/api/tasks/", content.encode("latin-1") if content.startswith("\xff")
                              else content, content_type=content_type)
    assert response.status_code == status, response.content
    body = response.json()
    message = body.get("detail") or body.get("non_field_errors") or body
    assert message, body  # a reason, not an empty error


def test_non_json_errors_say_what_was_wrong(user):
    client = token_client(user)
    assert "JSON parse error" in client.generic("POST", "/api/tasks/", "{not json",
                                                content_type="application/json").json()["detail"]
    assert "Expected a dictionary" in str(client.generic("POST", "/api/tasks/", "[]",
                                                         content_type="application/json").json())
    assert "Unsupported media type" in client.generic("POST", "/api/tasks/", "x",
                                                      content_type="text/plain").json()["detail"]


def test_form_encoded_bodies_are_validated_the_same_way(user):
    client = token_client(user)
    form = "application/x-www-form-urlencoded"
    response = client.generic("POST", "/api/tasks/", "name=x&task_type=always_succeeds&execution_time=abc",
                              content_type=form)
    assert response.status_code == 400
    assert "execution_time" in response.json()
    response = client.generic("POST", "/api/tasks/", "name=x&task_type=always_succeeds&execution_time=1",
                              content_type=form)
    assert response.status_code == 201
    # Multipart is not accepted: nothing is uploaded.
    assert client.post("/api/tasks/", VALID, format="multipart").status_code == 415


@pytest.mark.parametrize("method,url", [
    ("get", "/api/tasks/0.5/"), ("get", "/api/tasks/0.5/logs/"), ("post", "/api/tasks/0.5/cancel/"),
    ("get", "/api/nothing-here/"), ("post", "/api/tasks/1/explode/"),
])
def test_unknown_api_urls_are_json_404(user, method, url):
    response = getattr(token_client(user), method)(url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_api_urls_without_the_slash_still_redirect(user):
    response = token_client(user).get("/api/tasks")
    assert response.status_code == 301 and response["Location"] == "/api/tasks/"


@pytest.mark.parametrize("url,params,status", [
    ("/api/tasks/", {"status": "bogus"}, 400),
    ("/api/tasks/", {"task_type": "bogus"}, 400),
    ("/api/tasks/", {"page": "abc"}, 404),
    ("/api/tasks/", {"page": "999"}, 404),
    ("/api/tasks/", {"page_size": "-5"}, 400),
    ("/api/tasks/", {"page_size": "0"}, 400),
    ("/api/tasks/", {"page_size": "abc"}, 400),
    ("/api/tasks/", {"page_size": "null"}, 400),
    ("/api/tasks/", {"page_size": str(10 ** 30)}, 200),  # capped at the maximum
    ("/api/tasks/{id}/logs/", {"page_size": "x"}, 400),
    ("/api/tasks/null,null/logs/", {}, 404),
    ("/api/tasks/1.5/", {}, 404),
    ("/api/tasks/", {"ordering": "owner__password"}, 200),
    ("/api/tasks/", {"search": "\x00"}, 400),
    ("/api/tasks/", {"search": "x" * 10000}, 200),
    ("/api/tasks/abc/", {}, 404),
    ("/api/tasks/0/", {}, 404),
    ("/api/tasks/-1/", {}, 404),
    ("/api/tasks/99999999999999999999999/", {}, 404),
    ("/api/tasks/99999999999999999999999/logs/", {}, 404),
    ("/api/tasks/{id}/logs/", {"attempt": "abc"}, 400),
    ("/api/tasks/{id}/logs/", {"attempt": "0"}, 400),
    ("/api/tasks/{id}/logs/", {"attempt": str(10 ** 30)}, 200),
])
def test_bad_query_and_path_values_never_500(user, make_task, url, params, status):
    task = make_task()
    response = token_client(user).get(url.format(id=task.pk), params)
    assert response.status_code == status, (url, params, response.status_code, response.content[:300])


def test_ordering_by_a_hidden_field_is_ignored(user, other_user, make_task):
    """OrderingFilter only honours ordering_fields: no ordering by another table's columns (an oracle)."""
    make_task(name="b")
    make_task(name="a")
    names = [t["name"] for t in token_client(user).get("/api/tasks/", {"ordering": "owner__password"}).json()[
        "results"]]
    assert names == ["a", "b"]  # the default, newest first


@pytest.mark.parametrize("body", [{"version": "x"}, {"version": 0}, {"version": 10 ** 30}, {"version": None}])
def test_bad_action_bodies_get_400(user, make_task, body):
    task = make_task()
    response = token_client(user).post(f"/api/tasks/{task.pk}/cancel/", body, format="json")
    assert response.status_code == 400, response.content
    assert "version" in response.json()


@pytest.mark.parametrize("content", ['""', "[]", "42"])
def test_an_action_body_that_is_not_an_object_is_refused(user, make_task, content):
    task = make_task()
    response = token_client(user).generic("POST", f"/api/tasks/{task.pk}/cancel/", content,
                                          content_type="application/json")
    assert response.status_code == 400, response.content
    assert "Expected a dictionary" in str(response.json())
    task.refresh_from_db()
    assert task.status == "pending", "a refused request changed nothing"


def test_the_schema_documents_the_error_responses(user):
    schema = token_client(user).get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    assert {"400", "401", "403", "415", "429", "201"} <= set(paths["/api/tasks/"]["post"]["responses"])
    assert {"400", "401", "403", "404", "200"} <= set(paths["/api/tasks/"]["get"]["responses"])
    assert {"401", "403", "404", "409", "200"} <= set(paths["/api/tasks/{id}/cancel/"]["post"]["responses"])
    assert "404" not in paths["/api/task-types/"]["get"]["responses"]
    assert "429" not in paths["/api/tasks/{id}/cancel/"]["post"]["responses"]


def test_a_refused_transition_is_409_not_500(user, make_task):
    task = make_task()
    client = token_client(user)
    response = client.post(f"/api/tasks/{task.pk}/retry/")
    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition"


# --- Production settings -------------------------------------------------------------------------------------------------

def production_env(**changes: str) -> dict[str, str]:
    """The environment of a production process: nothing from the test run's DEBUG or SECURE_* variables."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SECURE_", "SESSION_", "CSRF_"))
           and key not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    env.update(DJANGO_SETTINGS_MODULE="taskrunner_project.settings", DEBUG="0",
               SECRET_KEY=secrets.token_urlsafe(64), ALLOWED_HOSTS="example.com")
    env.update(changes)
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_check_deploy_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stderr + result.stdout


def test_check_deploy_is_clean_behind_a_tls_proxy():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env(SECURE_PROXY_SSL_HEADER="1"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_settings_values():
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, "
            "s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD, "
            "getattr(s, 'SECURE_PROXY_SSL_HEADER', None))")
    run = lambda **env: subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=production_env(**env),  # noqa: E731
                                       capture_output=True, text=True, timeout=60)
    assert run().stdout.split() == ["False", "True", "True", "True", "31536000", "True", "True", "None"]
    proxied = run(SECURE_PROXY_SSL_HEADER="1", SECURE_SSL_REDIRECT="0", SECURE_HSTS_PRELOAD="0",
                  SECURE_HSTS_SECONDS="600").stdout
    assert proxied.split()[3:7] == ["False", "600", "True", "False"]
    assert "('HTTP_X_FORWARDED_PROTO', 'https')" in proxied


def test_production_refuses_to_start_without_a_secret_key():
    env = production_env()
    del env["SECRET_KEY"]
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set" in result.stderr
    assert "refuses to start without a real secret key" in result.stderr
    result = manage("check", env=production_env(SECRET_KEY=""))
    assert result.returncode != 0 and "SECRET_KEY is not set" in result.stderr


def test_development_runs_without_a_secret_key():
    env = production_env(DEBUG="1")
    del env["SECRET_KEY"]
    result = manage("check", env=env)
    assert result.returncode == 0, result.stderr
