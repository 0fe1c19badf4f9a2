"""The deployment files, checked against the code they deploy.

No Docker engine runs on the development and CI machines (docs/dependencies.md), so docker-compose.yml, the
two Dockerfiles, .dockerignore and .env.example are parsed here and cross-checked with the settings classes,
the HTTP routes, the ``__main__`` modules and pyproject.toml.
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import re
import shlex
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from pydantic_settings import BaseSettings

from ml_service.config import MLSettings
from orchestrator.config import Settings
from scripts.lock_tool import read_lock

ROOT = Path(__file__).resolve().parents[1]

ORCHESTRATOR_PORT = Settings.model_fields["port"].default
ML_PORT = MLSettings.model_fields["port"].default
QDRANT_REST_PORT = 6333
POSTGRES_PORT = 5432
DISTRIBUTED = ("postgres", "api", "worker")
# The services that run the orchestrator image, and the environment names each may set.
ORCHESTRATOR_IMAGE_SERVICES = ("orchestrator", "api", "worker")


def env_names(cls: type[BaseSettings]) -> dict[str, str]:
    """Environment variable name -> field name, as pydantic-settings maps them (prefix, alias, upper case)."""
    prefix = cls.model_config.get("env_prefix") or ""
    names: dict[str, str] = {}
    for name, field in cls.model_fields.items():
        alias = field.validation_alias or field.alias
        names[(alias if isinstance(alias, str) else prefix + name).upper()] = name
    return names


ORCHESTRATOR_ENV = env_names(Settings)
ML_ENV = env_names(MLSettings)


# --- parsing helpers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions of a Dockerfile: comments dropped, backslash continuations joined."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    assert not pending, f"{path.name} ends inside a continued line"
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
    assert starts, "no FROM"
    return instructions[starts[-1] :]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not an exec form: {args}"
    return value


def dockerfile_env(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ENV":
            for token in shlex.split(ins.args):
                name, sep, value = token.partition("=")
                assert sep, f"use ENV NAME=value: {ins.args}"
                env[name] = value
    return env


def healthcheck_command(instructions: list[Instruction]) -> list[str]:
    checks = [ins.args for ins in instructions if ins.keyword == "HEALTHCHECK"]
    assert len(checks) == 1, f"expected one HEALTHCHECK, found {checks}"
    _, sep, command = checks[0].partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {checks[0]}"
    return exec_form(command)


def pip_installs(instructions: list[Instruction]) -> list[str]:
    """The `pip install ...` commands of the RUN instructions, in order."""
    installs: list[str] = []
    for ins in instructions:
        if ins.keyword == "RUN":
            for part in re.split(r"&&|;", ins.args):
                if re.search(r"\bpip install\b", part):
                    installs.append(part.strip())
    return installs


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's $$, $VAR, ${VAR}, ${VAR:-default} and ${VAR:?error}, resolved against `env`."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name, op, arg = match["braced"] or match["bare"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op and op.endswith("?"):
            raise KeyError(f"{name} is required: {arg}")
        return arg or ""

    return _INTERPOLATION.sub(replace, value)


def container_port(mapping: str | int | dict[str, Any]) -> tuple[str, int]:
    """(host part, container port) of a compose port entry."""
    if isinstance(mapping, dict):
        return str(mapping.get("published", "")), int(mapping["target"])
    text = interpolate(str(mapping), {})
    host, _, target = text.rpartition(":")
    return host, int(target.split("/")[0])


def healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def python_snippet(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] == "CMD", f"use the exec form: {test}"
    assert test[1] in {"python", "python3"} and test[2] == "-c", test
    return str(test[3])


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


@pytest.fixture(scope="module")
def orchestrator_dockerfile() -> list[Instruction]:
    return parse_dockerfile(ROOT / "Dockerfile")


@pytest.fixture(scope="module")
def ml_dockerfile() -> list[Instruction]:
    return parse_dockerfile(ROOT / "Dockerfile.ml")


# --- settings classes -----------------------------------------------------------------------------------


def test_settings_prefixes_and_names_do_not_collide() -> None:
    assert Settings.model_config.get("env_prefix", "") == ""
    assert MLSettings.model_config.get("env_prefix") == "ML_"
    # One .env feeds both services (docker-compose.yml's env_file): a name must mean one setting only.
    assert not set(ORCHESTRATOR_ENV) & set(ML_ENV)
    assert ORCHESTRATOR_PORT == 8002 and ML_PORT == 8001


# --- docker-compose.yml ---------------------------------------------------------------------------------


def test_compose_services_and_profiles(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"qdrant", "ml", "orchestrator", "vllm", *DISTRIBUTED}
    # A plain `docker compose up` starts the three core services; vLLM and the distributed mode only with
    # their profiles.
    for name in ("qdrant", "ml", "orchestrator"):
        assert not services[name].get("profiles"), name
    assert services["vllm"]["profiles"] == ["vlm"]
    for name in DISTRIBUTED:
        assert services[name]["profiles"] == ["distributed"], name
    text = (ROOT / "docker-compose.yml").read_text()
    assert "docker compose --profile distributed up -d --build --wait api worker" in text


def test_compose_needs_no_new_variable_for_a_plain_up(compose: dict[str, Any]) -> None:
    """Compose interpolates every service before it applies profiles: a required ${VAR:?} in a profile's
    service would stop a plain `docker compose up` too. The two keys are the only required variables."""

    def strings(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for value in node.values():
                yield from strings(value)
        elif isinstance(node, list):
            for value in node:
                yield from strings(value)
        elif isinstance(node, str):
            yield node

    shell = {"API_KEY": "secret", "ML_API_KEY": "ml-secret"}
    for value in strings(compose):
        interpolate(value, shell)


def test_compose_builds_the_right_dockerfiles(services: dict[str, dict[str, Any]]) -> None:
    for name in ORCHESTRATOR_IMAGE_SERVICES:
        assert services[name]["build"]["dockerfile"] == "Dockerfile", name
    assert services["ml"]["build"]["dockerfile"] == "Dockerfile.ml"
    for name in (*ORCHESTRATOR_IMAGE_SERVICES, "ml"):
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    assert services["qdrant"]["image"].startswith("${QDRANT_IMAGE:-qdrant/qdrant")
    assert "vllm/vllm-openai" in services["vllm"]["image"]


def test_compose_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    """No moving tags: every image (or default of ${VAR:-image}) names a version, never latest."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    images = {name: interpolate(str(service["image"]), {}) for name, service in services.items()}
    for name, image in images.items():
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.fullmatch(r"v?\d+(\.\d+)+", tag), (name, image)
    # The images this project builds carry its version.
    assert images["ml"] == f"archivist-ml:{version}"
    for name in ORCHESTRATOR_IMAGE_SERVICES:
        assert images[name] == f"archivist-orchestrator:{version}", name
    assert services["postgres"]["image"].startswith("${POSTGRES_IMAGE:-postgres:")
    # The Qdrant server is the release of the locked client (its compatibility check wants the same minor).
    client = read_lock(ROOT / "requirements" / "lock.txt")["qdrant-client"].version
    server = images["qdrant"].rpartition(":v")[2]
    assert server.split(".")[:2] == client.split(".")[:2], (server, client)


def test_compose_environment_names_are_real_settings(services: dict[str, dict[str, Any]]) -> None:
    checked = [(name, ORCHESTRATOR_ENV) for name in ORCHESTRATOR_IMAGE_SERVICES] + [("ml", ML_ENV)]
    for service, known in checked:
        env = compose_env(services[service])
        assert env, f"{service} sets no environment"
        unknown = sorted(set(env) - set(known))
        assert not unknown, f"{service} sets {unknown}, which are not settings of its Settings class"


def test_compose_environment_values(services: dict[str, dict[str, Any]]) -> None:
    orch = compose_env(services["orchestrator"])
    assert orch["HOST"] == "0.0.0.0"
    assert int(orch["PORT"]) == ORCHESTRATOR_PORT
    assert orch["QDRANT_URL"] == f"http://qdrant:{QDRANT_REST_PORT}"
    assert orch["ML_SERVICE_URL"] == f"http://ml:{ML_PORT}"
    assert orch["DATA_DIR"] == "/data"
    assert orch["ALLOWED_ROOTS"] == "/media"
    # Required from the environment: without it, compose refuses to start rather than the orchestrator.
    assert orch["API_KEY"].startswith("${API_KEY:?")
    with pytest.raises(KeyError):
        interpolate(orch["API_KEY"], {})
    ml = compose_env(services["ml"])
    assert ml["ML_HOST"] == "0.0.0.0"
    assert int(ml["ML_PORT"]) == ML_PORT
    # The ML service listens beyond loopback too: its key is required; the orchestrator sends the same one.
    assert ml["ML_API_KEY"].startswith("${ML_API_KEY:?")
    assert orch["ML_SERVICE_API_KEY"] == ml["ML_API_KEY"]
    with pytest.raises(KeyError):
        interpolate(ml["ML_API_KEY"], {})


def test_compose_environment_values_are_valid_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values parse as the settings classes parse them, and the orchestrator starts only with a key."""
    for name in (*ORCHESTRATOR_ENV, *ML_ENV):
        monkeypatch.delenv(name, raising=False)
    shell = {"API_KEY": "secret", "ML_API_KEY": "ml-secret"}
    for name, value in compose_env(services["orchestrator"]).items():
        monkeypatch.setenv(name, interpolate(value, shell))
    settings = Settings(_env_file=None)
    settings.check_exposure()
    assert settings.ml_service_api_key == "ml-secret"
    assert settings.qdrant_url == f"http://qdrant:{QDRANT_REST_PORT}"
    assert settings.ml_urls == [f"http://ml:{ML_PORT}"]  # ML_SERVICE_URLS defaults to empty
    assert [str(p) for p in settings.allowed_root_paths] == ["/media"]
    assert not settings.is_loopback
    monkeypatch.delenv("API_KEY")
    with pytest.raises(ValueError, match="API_KEY"):
        Settings(_env_file=None).check_exposure()

    for name, value in compose_env(services["ml"]).items():
        monkeypatch.setenv(name, interpolate(value, shell))
    ml = MLSettings()
    assert (ml.host, ml.port) == ("0.0.0.0", ML_PORT)
    assert ml.api_key is not None and ml.api_key.get_secret_value() == "ml-secret"
    ml.check_exposure()
    monkeypatch.delenv("ML_API_KEY")
    with pytest.raises(ValueError, match="ML_API_KEY"):
        MLSettings().check_exposure()


def test_compose_ports(services: dict[str, dict[str, Any]]) -> None:
    orch_ports = [container_port(p) for p in services["orchestrator"]["ports"]]
    assert [port for _, port in orch_ports] == [ORCHESTRATOR_PORT]
    # The ML service is reached on the compose network; a fixed host port would stop `--scale ml=N`.
    ml = services["ml"]
    assert [int(p) for p in ml["expose"]] == [ML_PORT]
    for host, _ in (container_port(p) for p in ml.get("ports", [])):
        assert host in {"", "127.0.0.1:"}, f"ml publishes a fixed host port ({host}): it cannot scale"
    # Qdrant has no API key here: never published beyond the host's loopback.
    for host, port in (container_port(p) for p in services["qdrant"].get("ports", [])):
        assert host.startswith("127.0.0.1:"), f"qdrant port {port} published on {host or 'all interfaces'}"
    assert "8000" in [str(p) for p in services["vllm"]["expose"]]
    assert "8000" in [str(a) for a in services["vllm"]["command"]]


def test_compose_volumes(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    named = set(compose["volumes"])
    qdrant_volumes = [v.split(":") for v in services["qdrant"]["volumes"]]
    assert [(src, dst) for src, dst in qdrant_volumes] == [("qdrant_storage", "/qdrant/storage")]
    assert "qdrant_storage" in named
    by_target = {v["target"]: v for v in services["orchestrator"]["volumes"]}
    data = by_target["/data"]
    assert data["type"] == "volume" and data["source"] in named
    assert compose_env(services["orchestrator"])["DATA_DIR"] == data["target"]
    media = by_target["/media"]
    assert media["type"] == "bind" and media["read_only"] is True
    assert media["source"].startswith("${MEDIA_DIR")
    vlm_models = [v for v in services["vllm"]["volumes"] if v["target"] == "/models/vlm"]
    assert vlm_models and vlm_models[0]["read_only"] is True
    assert "/models/vlm" in services["vllm"]["command"]


def test_compose_healthchecks_point_at_real_endpoints(services: dict[str, dict[str, Any]]) -> None:
    from ml_service.app import create_app as create_ml_app
    from orchestrator.app import create_app as create_orchestrator_app

    def get_paths(app: FastAPI) -> set[str]:
        return {path for path, methods in app.openapi()["paths"].items() if "get" in methods}

    orch_routes = get_paths(create_orchestrator_app(Settings(_env_file=None)))
    ml_routes = get_paths(create_ml_app(MLSettings()))
    assert {"/health", "/ready"} <= orch_routes and {"/health", "/ready"} <= ml_routes

    for service, port, routes in (
        ("ml", ML_PORT, ml_routes),
        ("orchestrator", ORCHESTRATOR_PORT, orch_routes),
        ("api", ORCHESTRATOR_PORT, orch_routes),
    ):
        snippet = python_snippet(services[service])
        compile(snippet, f"{service} healthcheck", "exec")
        urls = re.findall(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", snippet)
        assert len(urls) == 1, snippet
        assert int(urls[0][0]) == port
        assert urls[0][1] in routes
    assert "127.0.0.1:8001/ready'" in python_snippet(services["ml"])
    assert "127.0.0.1:8000/health'" in python_snippet(services["vllm"])
    assert f"/dev/tcp/127.0.0.1/{QDRANT_REST_PORT}" in healthcheck_text(services["qdrant"])
    assert "/readyz" in healthcheck_text(services["qdrant"])


def test_compose_depends_on_healthy_services(services: dict[str, dict[str, Any]]) -> None:
    for service, needs in (
        ("orchestrator", {"qdrant", "ml"}),
        ("api", {"postgres", "qdrant", "ml"}),
        ("worker", {"postgres", "qdrant", "ml"}),
    ):
        depends = services[service]["depends_on"]
        assert set(depends) == needs, service
        for name, spec in depends.items():
            assert spec["condition"] == "service_healthy", (service, name)
            assert services[name]["healthcheck"]["test"], f"{name} has no healthcheck to wait for"


# --- docker-compose.yml: the distributed mode (profile "distributed") ----------------------------------


def test_compose_distributed_commands_are_cli_commands(services: dict[str, dict[str, Any]]) -> None:
    from orchestrator.cli import app

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["archivist"] == "orchestrator.cli:main"
    commands = {c.name or c.callback.__name__ for c in app.registered_commands if c.callback is not None}
    for service, command in (("api", "serve"), ("worker", "worker")):
        assert services[service]["command"] == ["archivist", command]
        assert command in commands, f"`archivist {command}` ({service}) is not a command of orchestrator.cli"


def test_compose_distributed_environment(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API and the workers reach the database the postgres service creates (its password followed), the
    shared Qdrant server and the ML service; the values parse as Settings; the API still needs its key."""
    pg = compose_env(services["postgres"])
    orch = compose_env(services["orchestrator"])
    shell = {"API_KEY": "secret", "ML_API_KEY": "ml-secret"}
    for name in ("api", "worker"):
        env = compose_env(services[name])
        for given in (shell, {**shell, "POSTGRES_PASSWORD": "chosen"}):
            password = interpolate(pg["POSTGRES_PASSWORD"], given)
            user, db = pg["POSTGRES_USER"], pg["POSTGRES_DB"]
            expected = f"postgresql://{user}:{password}@postgres:{POSTGRES_PORT}/{db}"
            assert interpolate(env["DATABASE_URL"], given) == expected, name
        # A Qdrant server (never the embedded store), the ML service and its key as the orchestrator has them.
        for key in ("QDRANT_URL", "ML_SERVICE_URL", "ML_SERVICE_API_KEY", "ML_SERVICE_URLS", "ALLOWED_ROOTS"):
            assert env[key] == orch[key], (name, key)

        for setting in ORCHESTRATOR_ENV:
            monkeypatch.delenv(setting, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, interpolate(value, shell))
        settings = Settings(_env_file=None)
        assert settings.database_url and settings.database_url.startswith("postgresql://"), name
        assert settings.qdrant_url == f"http://qdrant:{QDRANT_REST_PORT}"
        assert settings.ml_service_api_key == "ml-secret"

    # The API is the orchestrator's service with a database, under its own host name.
    api = compose_env(services["api"])
    own = {
        "DATABASE_URL",
        "TRUSTED_HOSTS",
        "SHARED_THUMBNAILS_DIR",
    }  # (thumbnails: test_compose_distributed_volumes)
    assert {k: v for k, v in api.items() if k not in own} == {
        k: v for k, v in orch.items() if k != "TRUSTED_HOSTS"
    }
    assert "api" in interpolate(api["TRUSTED_HOSTS"], {}).split(",")
    for setting in ORCHESTRATOR_ENV:
        monkeypatch.delenv(setting, raising=False)
    for key, value in api.items():
        monkeypatch.setenv(key, interpolate(value, shell))
    Settings(_env_file=None).check_exposure()
    monkeypatch.delenv("API_KEY")
    with pytest.raises(ValueError, match="API_KEY"):
        Settings(_env_file=None).check_exposure()
    # The workers' slots default to the setting's default.
    slots = interpolate(compose_env(services["worker"])["WORKER_SLOTS"], {})
    assert int(slots) == Settings.model_fields["worker_slots"].default


def test_compose_distributed_ports_and_replicas(services: dict[str, dict[str, Any]]) -> None:
    # The API publishes what the single-machine orchestrator does (the header says to run one of the two).
    assert services["api"]["ports"] == services["orchestrator"]["ports"]
    # Workers serve nothing and scale (`--scale worker=N`); PostgreSQL, with a default password, stays on
    # the compose network.
    assert "ports" not in services["worker"] and "expose" not in services["worker"]
    assert "ports" not in services["postgres"]
    assert [int(p) for p in services["postgres"]["expose"]] == [POSTGRES_PORT]
    assert services["worker"]["deploy"]["replicas"] >= 2


def test_compose_distributed_volumes(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    named = set(compose["volumes"])
    assert services["postgres"]["volumes"] == ["postgres_data:/var/lib/postgresql/data"]
    assert "postgres_data" in named
    orch = {v["target"]: v for v in services["orchestrator"]["volumes"]}
    api = {v["target"]: v for v in services["api"]["volumes"]}
    assert api["/data"]["type"] == "volume" and api["/data"]["source"] in named
    # The single-machine orchestrator's state stays apart from the API's.
    assert api["/data"]["source"] != orch["/data"]["source"]
    # No shared volume at the workers' DATA_DIR: each replica's node-local SQLite files stay its own.
    worker = {v["target"]: v for v in services["worker"]["volumes"]}
    assert set(worker) == {"/media", "/thumbnails"}
    # Thumbnails: written by the workers, served by the API, from one volume.
    thumbs = compose_env(services["api"])["SHARED_THUMBNAILS_DIR"]
    assert thumbs == compose_env(services["worker"])["SHARED_THUMBNAILS_DIR"]
    assert api[thumbs]["type"] == worker[thumbs]["type"] == "volume"
    assert api[thumbs]["source"] == worker[thumbs]["source"] in named
    # The API and the workers see the media at the paths the jobs name.
    for mounts in (api, worker):
        assert mounts["/media"] == orch["/media"]
    for name in ("api", "worker"):
        assert compose_env(services[name])["DATA_DIR"] == "/data"


def test_compose_distributed_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    pg = compose_env(services["postgres"])
    # Over TCP (the image's init-time server listens on its socket only), as the database's user.
    assert services["postgres"]["healthcheck"]["test"] == [
        "CMD",
        "pg_isready",
        "--host=127.0.0.1",
        f"--port={POSTGRES_PORT}",
        f"--username={pg['POSTGRES_USER']}",
        f"--dbname={pg['POSTGRES_DB']}",
    ]
    # The image's own check asks /health, which a worker does not serve: it must be switched off.
    assert services["worker"]["healthcheck"] == {"disable": True}
    assert "/ready" in python_snippet(services["api"])


class _StatusServer(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        try:
            self.send_response(self.status if self.path == "/readyz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except (BrokenPipeError, ConnectionResetError):  # the check reads the status line and hangs up
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def loopback_server() -> Iterator[tuple[int, type[_StatusServer]]]:
    handler = type("Handler", (_StatusServer,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def test_qdrant_healthcheck_runs_against_a_readyz_endpoint(
    services: dict[str, dict[str, Any]], loopback_server: tuple[int, type[_StatusServer]]
) -> None:
    """The bash-only check (the image has no curl) really tells 200 from 503, here on a free port."""
    test = services["qdrant"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "bash", "-c"], test
    port, handler = loopback_server
    script = interpolate(test[3], {}).replace(f"127.0.0.1/{QDRANT_REST_PORT}", f"127.0.0.1/{port}")

    def run() -> int:
        return subprocess.run(["bash", "-c", script], capture_output=True, timeout=10).returncode

    assert run() == 0
    handler.status = 503
    assert run() != 0


def test_vllm_service_is_documented_and_gets_a_gpu(services: dict[str, dict[str, Any]]) -> None:
    vllm = services["vllm"]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    text = (ROOT / "docker-compose.yml").read_text()
    assert "ML_VLM_URL=http://vllm:8000/v1" in text
    # The ML service gets ML_VLM_URL from the shell or ./.env; empty (the default) is "no VLM".
    ml_env = compose_env(services["ml"])
    assert "ML_VLM_URL" in ML_ENV and ml_env["ML_VLM_URL"] == "${ML_VLM_URL:-}"
    assert MLSettings(vlm_url=interpolate(ml_env["ML_VLM_URL"], {})).vlm_url is None
    assert MLSettings(vlm_url="http://vllm:8000/v1").image_tasks[-1] == "caption"
    # The model name the ML service asks for is the one vLLM serves, by default.
    command = [str(a) for a in vllm["command"]]
    served = interpolate(command[command.index("--served-model-name") + 1], {})
    assert MLSettings.model_fields["vlm_model"].default == served


# --- Dockerfiles ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dockerfile", "module", "port", "health_path", "known_env"),
    [
        ("Dockerfile", "orchestrator", ORCHESTRATOR_PORT, "/health", ORCHESTRATOR_ENV),
        ("Dockerfile.ml", "ml_service", ML_PORT, "/ready", ML_ENV),
    ],
)
def test_dockerfile_runs_the_service(
    dockerfile: str, module: str, port: int, health_path: str, known_env: dict[str, str]
) -> None:
    stage = final_stage(parse_dockerfile(ROOT / dockerfile))
    # A fixed Python release on Debian 12, not a moving tag.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", stage[0].args), stage[0].args

    cmds = [exec_form(ins.args) for ins in stage if ins.keyword == "CMD"]
    assert cmds == [["python", "-m", module]]
    assert (ROOT / module / "__main__.py").is_file()

    assert [ins.args for ins in stage if ins.keyword == "EXPOSE"] == [str(port)]
    users = [ins.args for ins in stage if ins.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, f"{dockerfile} runs as root"

    env = dockerfile_env(stage)
    settings_env = {k: v for k, v in env.items() if not k.startswith(("PYTHON", "PIP_"))}
    unknown = sorted(set(settings_env) - set(known_env))
    assert not unknown, f"{dockerfile} sets {unknown}, which are not settings"
    host_var, port_var = ("ML_HOST", "ML_PORT") if module == "ml_service" else ("HOST", "PORT")
    assert env[host_var] == "0.0.0.0" and int(env[port_var]) == port

    check = healthcheck_command(stage)
    assert check[:2] == ["python", "-c"]
    snippet = check[2]
    compile(snippet, f"{dockerfile} healthcheck", "exec")
    assert f"'{port_var}', '{port}'" in snippet and f"%s{health_path}'" in snippet, snippet


def test_orchestrator_image_installs_the_locked_base_set(orchestrator_dockerfile: list[Instruction]) -> None:
    installs = pip_installs(orchestrator_dockerfile)
    assert installs == [
        "pip install --no-deps --require-hashes -r requirements/orchestrator.txt",
        "pip install --no-deps --no-build-isolation .",
    ]
    copies = [ins.args for ins in orchestrator_dockerfile if ins.keyword == "COPY"]
    assert "requirements/orchestrator.txt ./requirements/" in copies
    text = " ".join(ins.args for ins in orchestrator_dockerfile)
    assert "[ml]" not in text and "torch" not in text


def test_ml_image_installs_the_locked_ml_set(ml_dockerfile: list[Instruction]) -> None:
    installs = pip_installs(ml_dockerfile)
    # Every dependency install is hash-checked from a lock file; the project itself goes in without deps.
    for command in installs:
        assert "--no-deps" in command, command
        assert "--require-hashes" in command or command == "pip install --no-deps --no-build-isolation .", (
            command
        )
    [run] = [ins.args for ins in ml_dockerfile if ins.keyword == "RUN" and 'case "$TORCH"' in ins.args]
    # TORCH=cpu: torch alone from PyTorch's CPU index, the rest of ml.txt from PyPI; TORCH=gpu: ml-gpu.txt.
    assert (
        "only-package torch requirements/ml.txt" in run and "strip-package torch requirements/ml.txt" in run
    )
    assert '--index-url "$TORCH_CPU_INDEX" -r /tmp/torch.txt' in run
    assert "cp requirements/ml-gpu.txt /tmp/lock.txt" in run
    args = [ins.args for ins in ml_dockerfile if ins.keyword == "ARG"]
    assert "TORCH=cpu" in args and "TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu" in args
    copies = [ins.args for ins in ml_dockerfile if ins.keyword == "COPY"]
    assert "requirements/ml.txt requirements/ml-gpu.txt ./requirements/" in copies
    assert "scripts/lock_tool.py ./scripts/" in copies
    ml = read_lock(ROOT / "requirements" / "ml.txt")
    assert ml["torch"].version.endswith("+cpu") and "pytest" not in ml


def test_insightface_comes_from_the_lock_without_opencv_python(ml_dockerfile: list[Instruction]) -> None:
    # insightface asks for opencv-python, whose GUI build would overwrite the headless cv2: the lock
    # overrides it away; pip check (image and scripts/install.sh) allows only that missing requirement.
    for name in ("lock.txt", "ml.txt", "ml-gpu.txt"):
        pins = read_lock(ROOT / "requirements" / name)
        assert "insightface" in pins and "opencv-python" not in pins and "opencv-python-headless" in pins
    allowed = r"'^insightface [^ ]* requires opencv-python, which is not installed\.$'"
    [check] = [ins.args for ins in ml_dockerfile if ins.keyword == "RUN" and "pip check" in ins.args]
    assert allowed in check and allowed in (ROOT / "scripts" / "install.sh").read_text()
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ml"]
    assert not any(d.startswith("insightface") for d in extra)


def test_pyannote_install_drops_torchaudios_cuda_libraries_in_both_installs(
    ml_dockerfile: list[Instruction],
) -> None:
    # torchaudio's PyPI wheels link CUDA libraries that the CPU torch lacks; both installs delete them after
    # installing the lock.
    [command] = [ins.args for ins in ml_dockerfile if ins.keyword == "RUN" and 'case "$TORCH"' in ins.args]
    script = (ROOT / "scripts" / "install.sh").read_text()
    drop = 'rm -f "$ta"/lib/*.so'
    assert drop in command and drop in script
    assert command.index("-r /tmp/lock.txt") < command.index(drop)
    assert script.index("requirements/lock.txt") < script.index(drop)
    for name in ("lock.txt", "ml.txt", "ml-gpu.txt"):
        pins = read_lock(ROOT / "requirements" / name)
        assert pins["pyannote-audio"].version.startswith("4.") and "torchaudio" in pins


def test_install_script_installs_the_lock_and_fails_loudly() -> None:
    script = (ROOT / "scripts" / "install.sh").read_text()
    assert "set -euo pipefail" in script
    assert "|| true" not in script, "a failed install step must stop the install"
    assert "uv pip sync" in script and "--require-hashes" in script and "requirements/lock.txt" in script
    assert "pip install -e" not in script and "pip install -q -e" not in script


# --- .dockerignore --------------------------------------------------------------------------------------


def test_dockerignore_excludes_local_state_but_not_the_sources() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    excluded = [p for p in patterns if not p.startswith("!")]
    for required in (".venv", ".git", "data", ".demo", "samples", ".env", "**/__pycache__", ".mypy_cache"):
        assert required in excluded, f".dockerignore misses {required}"
    for needed in ("pyproject.toml", "requirements", "orchestrator", "ml_service"):
        hits = [p for p in excluded if fnmatch.fnmatch(needed, p)]
        assert not hits, f"{needed} is needed by the Dockerfiles but ignored by {hits}"


# --- .env.example ---------------------------------------------------------------------------------------

_ENTRY = re.compile(r"^(?P<commented># )?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


@dataclass(frozen=True)
class EnvEntry:
    name: str
    value: str
    commented: bool
    comment: str


def env_example() -> list[EnvEntry]:
    entries: list[EnvEntry] = []
    previous = ""
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = _ENTRY.match(line)
        if match:
            entries.append(EnvEntry(match["name"], match["value"], bool(match["commented"]), previous))
        previous = line
    return entries


def test_env_example_lists_exactly_the_settings() -> None:
    names = [e.name for e in env_example()]
    assert len(names) == len(set(names)), "duplicate entries"
    known = set(ORCHESTRATOR_ENV) | set(ML_ENV)
    assert not sorted(set(names) - known), f"not settings: {sorted(set(names) - known)}"
    assert not sorted(known - set(names)), f"settings missing from .env.example: {sorted(known - set(names))}"
    for entry in env_example():
        assert entry.comment.startswith("# ") and not _ENTRY.match(entry.comment), f"{entry.name}: no comment"


def test_env_example_defaults_are_the_real_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Active lines carry the default; commented ones are the settings whose default is None or computed."""
    for name in (*ORCHESTRATOR_ENV, *ML_ENV):
        monkeypatch.delenv(name, raising=False)
    defaults = {
        **Settings(_env_file=None).model_dump(),
        **{f"ml.{k}": v for k, v in MLSettings().model_dump().items()},
    }

    entries = env_example()
    for entry in entries:
        cls, field_name = (
            (MLSettings, ML_ENV[entry.name])
            if entry.name in ML_ENV
            else (Settings, ORCHESTRATOR_ENV[entry.name])
        )
        field = cls.model_fields[field_name]
        if entry.commented:
            assert entry.value == "", f"{entry.name}: a commented entry shows no value"
            assert field.default is None or field.default_factory is not None, (
                f"{entry.name} has the default {field.default!r}: list it as an active line"
            )
        else:
            assert field.default_factory is None or field.default_factory() in ({}, []), entry.name
            monkeypatch.setenv(entry.name, entry.value)

    documented = {
        **Settings(_env_file=None).model_dump(),
        **{f"ml.{k}": v for k, v in MLSettings().model_dump().items()},
    }
    for entry in entries:
        key = f"ml.{ML_ENV[entry.name]}" if entry.name in ML_ENV else ORCHESTRATOR_ENV[entry.name]
        assert documented[key] == defaults[key], (
            f"{entry.name}={entry.value} is not the default {defaults[key]!r}"
        )
