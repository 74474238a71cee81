"""Property-based API testing: schemathesis reads /api/schema/ from a live daphne and throws generated valid and invalid
requests at every operation. The run passes only with zero server errors and zero responses that break the schema.

Bounded in time: a few examples per operation, a time budget, a fixed seed (reproducible), about 30-60 s in all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
from rest_framework.authtoken.models import Token

from tasks import services
from tests.support import free_port, start_daphne, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

CHECKS = ",".join([
    "not_a_server_error",            # no 5xx, whatever the input
    "response_schema_conformance",   # every documented response body matches its schema
    "status_code_conformance",       # every status code returned is documented
    "content_type_conformance",      # every response is the JSON the schema names, 404s included
    "ignored_auth",                  # the same requests without (or with a broken) token are refused
])
# Not "negative_data_rejection": it found two real gaps (page_size=null served a page; a cancel whose body was the
# JSON string "" cancelled), both fixed and covered in test_security.py; what it still reports is deliberate
# leniency: an empty filter (`?status=`, as an HTML form sends it) means "any", not an error.
OPERATIONS = {
    "GET /api/task-types/", "GET /api/tasks/", "POST /api/tasks/", "GET /api/tasks/{id}/", "GET /api/tasks/{id}/logs/",
    "POST /api/tasks/{id}/cancel/", "POST /api/tasks/{id}/retry/",
}
MAX_EXAMPLES = 25
TIME_BUDGET = 45  # seconds; fuzzing repeats until it is spent


@pytest.fixture
def live_server_url(test_database_name, tmp_path):
    port = free_port()
    server = start_daphne(test_database_name, tmp_path, port)
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            urllib.request.urlopen(f"{url}/login/", timeout=1)  # nosec B310: local test server
            return True
        except OSError:
            return False

    try:
        wait_for(up, timeout=30, message=f"daphne on port {port}")
        yield url
    finally:
        server.stop()


def test_schemathesis_finds_no_server_errors_and_no_schema_violations(user, other_user, live_server_url, tmp_path):
    token = Token.objects.create(user=user).key
    # Some rows to find: one of ours in each interesting state, one of another user's (must stay invisible: 404).
    mine = services.task_create(owner=user, name="mine", task_type="always_succeeds", execution_time="1")
    services.task_cancel(task_id=mine.pk, actor=user)
    services.task_create(owner=user, name="pending", task_type="flaky", execution_time="0.5")
    services.task_create(owner=other_user, name="not yours", task_type="always_succeeds", execution_time="1")

    report = tmp_path / "schemathesis.json"
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{live_server_url}/api/schema/",
        "--url", live_server_url,
        "--header", f"Authorization: Token {token}",
        "--checks", CHECKS,
        "--max-examples", str(MAX_EXAMPLES),
        "--max-time", str(TIME_BUDGET),
        "--phases", "examples,coverage,fuzzing",
        "--seed", "20261203",
        "--workers", "1",
        "--request-timeout", "10",
        "--no-color",
        "--report", "ndjson",
        "--report-ndjson-path", str(report),
        "--continue-on-failure",
    ]
    # Run in tmp_path: schemathesis and hypothesis keep their caches (.schemathesis/, .hypothesis/) in the cwd.
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=200)
    output = result.stdout[-15000:] + result.stderr[-5000:]
    assert result.returncode == 0, output
    assert report.exists() and report.stat().st_size > 0

    # It really ran, and the report agrees: every operation was exercised, none failed, no response was a 5xx.
    scenarios = [event["ScenarioFinished"] for event in map(json.loads, report.read_text().splitlines())
                 if "ScenarioFinished" in event]
    ran = [scenario for scenario in scenarios if scenario["status"] != "skip"]
    assert {scenario["status"] for scenario in ran} == {"success"}, output
    operations = {scenario["recorder"]["label"] for scenario in ran}
    assert operations == OPERATIONS, operations
    statuses = [
        interaction["response"]["status_code"]
        for scenario in ran for interaction in scenario["recorder"]["interactions"].values()
        if interaction.get("response")
    ]
    assert len(statuses) > 300, len(statuses)
    assert max(statuses) < 500
    assert {200, 201, 400, 404} <= set(statuses), sorted(set(statuses))
