"""docker-compose.yml, Dockerfile, .env.example and the nginx config, checked statically (Docker cannot run here).

Every command a service runs must exist and accept its arguments, every setting the code reads must reach the app
containers, images are pinned, the app runs as a non-root user, and the proxy upgrades WebSockets.
"""

import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands, load_command_class
from django.urls import resolve
from django.utils.module_loading import import_string

from tests.support import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = ["migrate", "web", "http", "worker"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
ENV_EXAMPLE = (ROOT / ".env.example").read_text()
NGINX = (ROOT / "deploy" / "nginx.conf").read_text()
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, environment: dict[str, str] | None = None) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error}: the value from `environment`, else the default."""
    def replace(match):
        name, operator, argument = match.groups()
        if environment and environment.get(name):
            return environment[name]
        if operator in (":?", "?"):
            raise KeyError(f"{name} is required: {argument}")
        return argument or ""
    return INTERPOLATION.sub(replace, str(value))


def settings_env_names() -> set[str]:
    """Every environment variable the project's code reads."""
    names = set()
    for path in [*(ROOT / "taskrunner_project").glob("*.py"), *(ROOT / "tasks").rglob("*.py")]:
        text = path.read_text()
        names |= set(re.findall(r"env_(?:str|bool|int|float|list)\(\s*\"([A-Z0-9_]+)\"", text))
        names |= set(re.findall(r"(?:environ\.get|getenv|environ\[)\(?\s*\"([A-Z0-9_]+)\"", text))
    names.discard("DJANGO_SETTINGS_MODULE")  # set by manage.py, wsgi.py and asgi.py themselves
    return names


def example_names() -> dict[str, str]:
    """NAME -> the comment lines just above it in .env.example (commented-out settings count)."""
    documented, comment = {}, []
    for line in ENV_EXAMPLE.splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if match:
            documented[match[1]] = " ".join(comment)
        elif line.startswith("#"):
            comment.append(line)
            continue
        comment = [] if not match else comment
    return documented


def command_of(service: str) -> list[str]:
    command = SERVICES[service]["command"]
    assert isinstance(command, list), f"{service}: use the exec (list) form, so signals reach the process"
    return [interpolate(part) for part in command]


# --- The file parses and has the decided layout -----------------------------------------------------------------------

def test_services():
    assert set(SERVICES) == {"db", "redis", "migrate", "web", "http", "worker", "proxy"}
    assert set(COMPOSE["volumes"]) >= {"pgdata", "redisdata"}


def test_images_are_pinned():
    images = {name: service["image"] for name, service in SERVICES.items() if "image" in service}
    from_lines = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, re.MULTILINE)
    assert from_lines
    for image in [*images.values(), *from_lines]:
        if image == "taskrunner:local":  # our own image, built from the Dockerfile
            continue
        name, _, tag = image.partition(":")
        assert re.match(r"^\d+\.\d+(\.\d+)?", tag), f"{image} is not pinned to a version"
    assert re.match(r"postgres:16\.\d+", images["db"])
    assert re.match(r"redis:7\.\d+\.\d+", images["redis"])
    assert re.match(r"nginx:1\.\d+\.\d+", images["proxy"])
    assert re.match(r"python:3\.(1[1-9])\.\d+", from_lines[0]), "Python 3.11 or newer, pinned"
    for service in APP_SERVICES:
        assert "build" in SERVICES[service] and SERVICES[service]["image"] == "taskrunner:local"


def test_db_and_redis():
    db, redis = SERVICES["db"], SERVICES["redis"]
    assert "pgdata:/var/lib/postgresql/data" in db["volumes"]
    assert "redisdata:/data" in redis["volumes"]
    command = " ".join(redis["command"])
    assert "--maxmemory-policy noeviction" in command and "--appendonly yes" in command
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert "ping" in redis["healthcheck"]["test"]


def test_healthchecks_and_dependencies():
    for name in ["db", "redis", "web", "http", "proxy"]:
        test = SERVICES[name].get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
    for name, service in SERVICES.items():
        for target, dependency in service.get("depends_on", {}).items():
            assert target in SERVICES
            condition = dependency["condition"]
            assert condition in ("service_healthy", "service_completed_successfully"), (name, target)
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{name} waits for {target}'s health, which is not checked"
    for name in ["web", "http", "worker"]:
        assert SERVICES[name]["depends_on"] == {
            "db": {"condition": "service_healthy"}, "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }
    assert SERVICES["migrate"]["restart"] == "no"  # one-shot
    assert set(SERVICES["migrate"]["depends_on"]) == {"db", "redis"}
    assert SERVICES["proxy"]["depends_on"] == {"web": {"condition": "service_healthy"},
                                               "http": {"condition": "service_healthy"}}
    for name in ["web", "http"]:  # the health URL is a real page
        url = re.search(r"http://127\.0\.0\.1:8000(/[^'\"]*)", " ".join(SERVICES[name]["healthcheck"]["test"]))[1]
        assert resolve(url).url_name == "login"


def test_worker_scales():
    for name, service in SERVICES.items():
        assert "container_name" not in service, f"{name}: a fixed name stops --scale"
        if name != "proxy":
            assert "ports" not in service, f"{name}: only the proxy publishes a port"
    assert SERVICES["proxy"]["ports"] == ["${TASKRUNNER_PORT:-8000}:80"]


# --- Every command exists and accepts its arguments -------------------------------------------------------------------

def parse_manage_py(command: list[str]):
    assert command[:2] == ["python", "manage.py"]
    name, args = command[2], command[3:]
    commands = get_commands()
    assert name in commands, f"manage.py {name} does not exist"
    return name, load_command_class(commands[name], name).create_parser("manage.py", name).parse_args(args)


def requirement(package: str) -> str:
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert package in pins, f"{package} is not pinned in requirements.txt"
    return pins[package]


def test_migrate_command():
    name, _ = parse_manage_py(command_of("migrate"))
    assert name == "prepare"  # migrate, and a first admin account


def test_worker_command():
    name, options = parse_manage_py(command_of("worker"))
    assert name == "rqworker-pool"
    assert options.num_workers == 2
    assert import_string(options.worker_class).__name__ == "TaskWorker"
    assert options.args == ["default"] and set(options.args) <= set(settings.RQ_QUEUES)
    assert settings.TASKRUNNER_QUEUE in options.args


def test_web_command_is_daphne():
    from daphne.cli import CommandLineInterface

    command = command_of("web")
    assert command[0] == "daphne" and requirement("daphne")
    options = CommandLineInterface().parser.parse_args(command[1:])
    assert (options.host, options.port, options.proxy_headers) == ("0.0.0.0", 8000, True)
    module, attribute = options.application.split(":")
    assert f"{module}.{attribute}" == settings.ASGI_APPLICATION
    assert callable(import_string(settings.ASGI_APPLICATION))
    assert DOCKERFILE.strip().splitlines()[-1].startswith('CMD ["daphne"')


def test_http_command_is_gunicorn():
    from gunicorn.config import Config

    command = command_of("http")
    assert command[0] == "gunicorn" and requirement("gunicorn")
    options = Config().parser().parse_args(command[1:])
    assert options.bind == ["0.0.0.0:8000"] and options.workers == 2
    assert options.args == [f"{settings.WSGI_APPLICATION.rsplit('.', 1)[0]}:application"]
    assert callable(import_string(settings.WSGI_APPLICATION))


# --- Settings reach the containers; no secret is committed ------------------------------------------------------------

def test_every_setting_reaches_the_app_services_and_is_documented():
    names = settings_env_names()
    assert {"SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS"} <= names
    documented = example_names()
    for service in APP_SERVICES:
        missing = names - set(SERVICES[service]["environment"])
        assert not missing, f"{service} does not get {sorted(missing)}"
    undocumented = names - set(documented)
    assert not undocumented, f".env.example does not list {sorted(undocumented)}"
    for name in names:
        assert documented[name].strip("# "), f".env.example has no comment for {name}"
    used_in_compose = set(INTERPOLATION.findall((ROOT / "docker-compose.yml").read_text()))
    assert {name for name, _, _ in used_in_compose} <= set(documented)


def test_secrets_are_required_not_committed():
    for service in APP_SERVICES:
        environment = SERVICES[service]["environment"]
        assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", environment["SECRET_KEY"])
        assert "${POSTGRES_PASSWORD:?" in environment["DATABASE_URL"]
    assert SERVICES["db"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    with pytest.raises(KeyError, match="SECRET_KEY is required"):
        interpolate(SERVICES["web"]["environment"]["SECRET_KEY"])
    assert re.search(r"^SECRET_KEY=$", ENV_EXAMPLE, re.MULTILINE)
    assert re.search(r"^POSTGRES_PASSWORD=$", ENV_EXAMPLE, re.MULTILINE)
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT).returncode
    assert ignored == 0, ".env must be git-ignored"
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".git", ".venv/"} <= set(dockerignore)


def compose_environment(**overrides) -> dict[str, str]:
    """The environment an app container gets with the defaults of docker-compose.yml and a .env of `overrides`."""
    given = {"SECRET_KEY": secrets.token_urlsafe(50), "POSTGRES_PASSWORD": "secret", **overrides}
    return {name: interpolate(value, given) for name, value in SERVICES["web"]["environment"].items()}


def run_manage(args, environment, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **environment}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)


def test_settings_load_with_compose_values_and_pass_the_deploy_check_behind_tls(tmp_path):
    environment = compose_environment(SECURE_SSL_REDIRECT="1", SECURE_PROXY_SSL_HEADER="1")
    assert environment["DEBUG"] == "0"
    result = run_manage(["check", "--deploy", "--fail-level", "WARNING"], environment, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_collectstatic_as_in_the_image_build(tmp_path):
    """The Dockerfile's build step: manifest storage with DEBUG off, into STATIC_ROOT."""
    step = re.search(r"^RUN (.*collectstatic.*)$", DOCKERFILE, re.MULTILINE)[1]
    env = dict(re.findall(r"(\w+)=(\S+)", step.split("python", 1)[0]))
    assert env["DEBUG"] == "0"
    result = run_manage(["collectstatic", "--noinput", "--verbosity", "0"],
                        {**env, "STATIC_ROOT": str(tmp_path / "static")}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "static" / "staticfiles.json").exists()
    assert list((tmp_path / "static" / "admin").rglob("*.css.gz"))
    assert SERVICES["web"]["environment"]["STATIC_ROOT"] == "/app/staticfiles"
    assert re.search(r"^WORKDIR /app$", DOCKERFILE, re.MULTILINE)


# --- Dockerfile -----------------------------------------------------------------------------------------------------

def test_dockerfile_runs_as_non_root_and_installs_the_requirements():
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.MULTILINE)
    assert users and users[-1] not in ("root", "0", "0:0")
    assert re.search(rf"useradd .*{users[-1]}", DOCKERFILE)
    lines = DOCKERFILE.splitlines()
    index = {name: next(i for i, line in enumerate(lines) if re.match(pattern, line)) for name, pattern in {
        "copy requirements": r"^COPY requirements\.txt", "install": r"^RUN pip install .*-r requirements\.txt",
        "copy code": r"^COPY \. \.", "collectstatic": r"^RUN .*collectstatic", "user": rf"^USER {users[-1]}",
    }.items()}
    assert index["copy requirements"] < index["install"] < index["copy code"] < index["collectstatic"] < index["user"]


# --- nginx --------------------------------------------------------------------------------------------------------------

def location(path: str) -> str:
    match = re.search(rf"location\s+{re.escape(path)}\s*\{{([^}}]*)\}}", NGINX)
    assert match, f"no location {path}"
    return match[1]


def upstream(name: str) -> str:
    return re.search(rf"upstream\s+{name}\s*\{{\s*server\s+([^;\s]+)", NGINX)[1]


def test_nginx_routes_websockets_to_daphne_and_the_rest_to_gunicorn():
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in SERVICES["proxy"]["volumes"]
    ws, rest = location("/ws/"), location("/")
    assert upstream(re.search(r"proxy_pass http://(\w+);", ws)[1]) == "web:8000"
    assert upstream(re.search(r"proxy_pass http://(\w+);", rest)[1]) == "http:8000"
    assert "proxy_http_version 1.1;" in ws
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade;", ws)
    assert re.search(r"proxy_set_header\s+Connection\s+\$connection_upgrade;", ws)
    assert re.search(r"map \$http_upgrade \$connection_upgrade \{\s*default\s+upgrade;", NGINX)
    assert re.search(r"proxy_read_timeout\s+(\d+)h;", ws)  # sockets outlive the 60 s default
    for block in (ws, rest):  # the Host header carries the port, for ALLOWED_HOSTS and the CSRF origin check
        assert re.search(r"proxy_set_header\s+Host\s+\$http_host;", block)
        assert re.search(r"proxy_set_header\s+X-Forwarded-Proto\s+", block)
    assert "listen 80" in NGINX
    health = location("= /nginx-health")
    assert "return 200" in health and "/nginx-health" in " ".join(SERVICES["proxy"]["healthcheck"]["test"])


def test_websocket_route_exists_under_ws():
    from tasks.routing import websocket_urlpatterns

    assert all(str(pattern.pattern).startswith("ws/") for pattern in websocket_urlpatterns)
    assert Path(ROOT / "taskrunner_project" / "asgi.py").exists()
