"""The REST API: create, list, detail, logs, retry, cancel; validation; permissions; the OpenAPI schema."""

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from tasks.models import Task
from tests.factories import run_next_attempt, set_status

pytestmark = pytest.mark.django_db(transaction=True)

REPRESENTATION = {"id", "name", "task_type", "execution_time", "status", "attempts", "max_attempts", "progress",
                  "version", "created_at", "updated_at", "started_at", "finished_at", "next_retry_at", "owner", "url",
                  "stale"}


def test_create_answers_at_once_with_the_pending_task(api_client):
    response = api_client.post("/api/tasks/", {"name": "Nightly report", "task_type": "flaky",
                                               "execution_time": "1.5", "max_attempts": 5})
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == REPRESENTATION
    assert (body["status"], body["attempts"], body["max_attempts"], body["version"]) == ("pending", 0, 5, 1)
    assert body["owner"] == "alice" and body["url"] == f"/tasks/{body['id']}/"
    assert body["execution_time"] == "1.500"


@pytest.mark.parametrize("payload,field,words", [
    ({"name": "", "task_type": "flaky", "execution_time": 1}, "name", "blank"),
    ({"name": "x" * 201, "task_type": "flaky", "execution_time": 1}, "name", "200"),
    ({"name": "x", "task_type": "nope", "execution_time": 1}, "task_type", "Valid types: always_fails"),
    ({"name": "x", "task_type": "flaky", "execution_time": 5000}, "execution_time", "from 0 to 3600"),
    ({"name": "x", "task_type": "flaky", "execution_time": -1}, "execution_time", "greater than or equal to 0"),
    ({"name": "x", "task_type": "flaky", "execution_time": "soon"}, "execution_time", "valid number"),
    ({"name": "x", "task_type": "flaky", "execution_time": 1, "max_attempts": 11}, "max_attempts", "10"),
    ({"task_type": "flaky", "execution_time": 1}, "name", "required"),
])
def test_bad_input_gets_a_message_per_field(api_client, payload, field, words):
    response = api_client.post("/api/tasks/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json() and words in " ".join(response.json()[field])
    assert not Task.objects.exists()


def test_list_is_paginated_filtered_searched_and_ordered(api_client, make_task):
    for i in range(60):
        make_task(name=f"job {i:02d}", task_type="flaky" if i % 2 else "always_succeeds")
    page = api_client.get("/api/tasks/").json()
    assert set(page) == {"count", "next", "previous", "results"}
    assert page["count"] == 60 and len(page["results"]) == 50 and page["next"]
    assert page["results"][0]["name"] == "job 59"  # newest first
    assert api_client.get("/api/tasks/?task_type=flaky").json()["count"] == 30
    assert api_client.get("/api/tasks/?status=completed").json()["count"] == 0
    searched = api_client.get("/api/tasks/?search=4&ordering=name").json()
    assert searched["count"] == 15 and [t["name"] for t in searched["results"]][:2] == ["job 04", "job 14"]
    assert api_client.get("/api/tasks/?status=exploded").status_code == 400


def test_list_uses_a_fixed_number_of_queries(api_client, make_task, django_assert_max_num_queries):
    for i in range(5):
        make_task(name=f"a{i}")
    with django_assert_max_num_queries(3) as few:
        api_client.get("/api/tasks/")
    for i in range(45):
        make_task(name=f"b{i}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(api_client.get("/api/tasks/").json()["results"]) == 50


def test_detail_has_the_attempt_history_and_logs_are_paginated(api_client, make_task):
    task = make_task(task_type="always_fails", execution_time="0", max_attempts=2)
    run_next_attempt(task)
    Task.objects.filter(pk=task.pk).update(next_retry_at=None)
    run_next_attempt(task)
    detail = api_client.get(f"/api/tasks/{task.pk}/").json()
    assert detail["status"] == "failed"
    assert [(a["number"], a["status"]) for a in detail["attempt_history"]] == [(1, "failed"), (2, "failed")]
    assert detail["attempt_history"][0]["error_type"] == "SimulatedFailure"
    logs = api_client.get(f"/api/tasks/{task.pk}/logs/").json()
    assert logs["results"][0]["message"] == "Queued by alice." and logs["results"][0]["attempt"] is None
    ids = [line["id"] for line in logs["results"]]
    assert ids == sorted(ids)
    second = api_client.get(f"/api/tasks/{task.pk}/logs/?attempt=2").json()["results"]
    assert second and {line["attempt"] for line in second} == {2}


def test_cancel_and_retry_answer_200_or_409_with_the_reason(api_client, make_task):
    task = make_task()
    cancelled = api_client.post(f"/api/tasks/{task.pk}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = api_client.post(f"/api/tasks/{task.pk}/cancel/")
    assert again.status_code == 409
    assert again.json()["code"] == "invalid_transition" and "is cancelled" in again.json()["detail"]
    retried = api_client.post(f"/api/tasks/{task.pk}/retry/")
    assert retried.status_code == 200 and retried.json()["status"] == "pending"
    assert api_client.post(f"/api/tasks/{task.pk}/retry/").status_code == 409


def test_anonymous_requests_are_refused(make_task):
    task = make_task()
    client = APIClient()
    for method, url in [("get", "/api/tasks/"), ("post", "/api/tasks/"), ("get", f"/api/tasks/{task.pk}/"),
                        ("get", f"/api/tasks/{task.pk}/logs/"), ("post", f"/api/tasks/{task.pk}/cancel/"),
                        ("post", f"/api/tasks/{task.pk}/retry/"), ("get", "/api/task-types/")]:
        assert getattr(client, method)(url).status_code == 401, url


def test_users_see_their_own_tasks_and_staff_see_all(make_task, other_user, staff_user):
    mine = make_task(name="mine")
    theirs = make_task(owner=other_user, name="theirs")
    bob = APIClient()
    bob.force_authenticate(other_user)
    assert [t["name"] for t in bob.get("/api/tasks/").json()["results"]] == ["theirs"]
    for method, suffix in [("get", ""), ("get", "logs/"), ("post", "cancel/"), ("post", "retry/")]:
        assert getattr(bob, method)(f"/api/tasks/{mine.pk}/{suffix}").status_code == 404
    staff = APIClient()
    staff.force_authenticate(staff_user)
    assert staff.get("/api/tasks/").json()["count"] == 2
    assert staff.post(f"/api/tasks/{theirs.pk}/cancel/").status_code == 200


def test_token_authentication(user, make_task):
    from rest_framework.authtoken.models import Token

    make_task()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    assert client.get("/api/tasks/").json()["count"] == 1
    client.credentials(HTTP_AUTHORIZATION="Token wrong")
    assert client.get("/api/tasks/").status_code == 401


def test_task_types_are_listed_with_descriptions(api_client):
    types = api_client.get("/api/task-types/").json()
    assert [t["name"] for t in types] == ["always_fails", "always_succeeds", "flaky", "simulated"]
    assert all(t["description"] for t in types)


def test_schema_generates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    text = (tmp_path / "schema.yml").read_text()
    assert "/api/tasks/{id}/cancel/" in text and "/api/tasks/{id}/logs/" in text


def test_docs_and_browsable_api_render_offline(client, user):
    client.force_login(user)
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content and b"//cdn" not in docs.content
    browsable = client.get("/api/tasks/", HTTP_ACCEPT="text/html")
    assert browsable.status_code == 200 and b"Task List" in browsable.content


def test_a_person_retry_is_refused_for_a_running_task(api_client, make_task):
    task = set_status(make_task(), "running")
    response = api_client.post(f"/api/tasks/{task.pk}/retry/")
    assert response.status_code == 409 and "is running" in response.json()["detail"]
