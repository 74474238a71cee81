"""`manage.py prepare`, run by bin/dev: database creation, migration, first admin account, clear service errors."""

import re
import subprocess
import sys
import uuid

import psycopg
import pytest

from tests.support import ROOT, TEST_REDIS_URL, free_port


def prepare(database_url: str, redis_url: str = TEST_REDIS_URL):
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url, "REDIS_URL": redis_url, "DEBUG": "1",
           "DJANGO_SETTINGS_MODULE": "taskrunner_project.settings"}
    return subprocess.run([sys.executable, "manage.py", "prepare"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)


@pytest.fixture
def fresh_database():
    name = f"taskrunner_prepare_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_creates_the_database_migrates_and_prints_a_generated_admin_password_once(fresh_database):
    url = f"postgres://postgres@127.0.0.1:5432/{fresh_database}"
    first = prepare(url)
    assert first.returncode == 0, first.stderr
    assert f"Created database '{fresh_database}'" in first.stdout
    password = re.search(r"user 'admin', password '([^']+)'", first.stdout).group(1)
    assert len(password) >= 12 and password != "admin"
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={fresh_database}") as conn:
        assert conn.execute("SELECT is_superuser FROM auth_user WHERE username = 'admin'").fetchone() == (True,)
    second = prepare(url)
    assert second.returncode == 0 and "password" not in second.stdout  # shown once, never again


def test_says_which_service_is_unreachable_and_how_to_start_it():
    no_postgres = prepare(f"postgres://postgres@127.0.0.1:{free_port()}/taskrunner")
    assert no_postgres.returncode != 0
    assert "PostgreSQL is not reachable at 127.0.0.1:" in no_postgres.stderr and "Start it" in no_postgres.stderr
    no_redis = prepare("postgres://postgres@127.0.0.1:5432/postgres", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert no_redis.returncode != 0
    assert "Redis is not reachable at redis://127.0.0.1:" in no_redis.stderr and "Start it" in no_redis.stderr


def test_production_refuses_to_start_without_a_secret_key():
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "0", "DJANGO_SETTINGS_MODULE": "taskrunner_project.settings"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0 and "SECRET_KEY is not set" in result.stderr
