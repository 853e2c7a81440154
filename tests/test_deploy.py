"""The real stack as written (issue 15). No Docker engine runs here, so what can be checked
without one is: docker-compose.yml against the Compose specification, every profile's services
complete (dependencies, health checks, restart policies, volumes), every app service's
environment and command against the code that reads them, .env.example against the settings,
the Qdrant server image against the client pin, the lock file against pyproject.toml, the
Dockerfile's lint and layer order, and the web command itself served by gunicorn here."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from shop_search.environment import environment_names

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
BIN = Path(sys.executable).parent
PROFILES = [(), ("cluster",), ("cpu-worker",), ("cluster", "cpu-worker")]
# variables the app images' programs read that are not settings of ours, and why
RUNTIME_VARIABLES = {
    "HF_HOME": "where transformers keeps downloaded models (the `models` volume)",
}


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def app_services(spec: dict) -> dict[str, dict]:
    """The services running this project's images."""
    return {name: s for name, s in spec["services"].items() if str(s.get("image", "")).startswith("shop-search:")}


def env_example() -> dict[str, str | None]:
    """NAME -> its value where .env.example sets it, None where it shows it commented (with
    its default)."""
    names: dict[str, str | None] = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^(# )?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            names[match.group(2)] = match.group(3) if match.group(1) is None else None
    return names


def interpolated() -> set[str]:
    """Every ${NAME...} docker-compose.yml interpolates."""
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text(encoding="utf-8")))


def enabled(spec: dict, profiles: tuple[str, ...]) -> dict[str, dict]:
    return {
        name: s for name, s in spec["services"].items() if not s.get("profiles") or set(s["profiles"]) & set(profiles)
    }


# --- the Compose file -------------------------------------------------------------------
def check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_compose_file_is_valid_against_the_compose_specification(tmp_path):
    result = check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    # and the check does catch a mistake: a misspelt key
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE.read_text(encoding="utf-8").replace("restart: unless-stopped", "restarts: unless-stopped", 1)
    )
    assert check_jsonschema(broken).returncode != 0


@pytest.mark.parametrize("profiles", PROFILES, ids=lambda p: "+".join(p) or "default")
def test_every_profile_starts_a_complete_healthy_stack(profiles):
    spec = compose()
    services = enabled(spec, profiles)
    volumes = set(spec.get("volumes") or {})
    for name, service in services.items():
        for needed, condition in (service.get("depends_on") or {}).items():
            assert needed in services, f"{name} depends on {needed}, which profile {profiles} does not start"
            assert condition["condition"] in ("service_healthy", "service_completed_successfully")
            if condition["condition"] == "service_healthy":
                assert not services[needed].get("healthcheck", {}).get("disable"), f"{needed} has no health check"
        health = service.get("healthcheck") or {}
        one_shot = service.get("restart") == "no"
        assert health.get("test") or (one_shot and health.get("disable")), f"{name} has no health check"
        assert service.get("restart") in ("unless-stopped", "always", "on-failure", "no"), f"{name} never restarts"
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0]
            assert source in volumes or source.startswith((".", "/")), f"{name} mounts undeclared volume {source}"
    # the database is migrated by one one-shot service that everything else waits for
    waiting = [n for n, s in services.items() if "migrate" in (s.get("depends_on") or {})]
    assert set(waiting) == set(app_services(spec)) & set(services) - {"migrate"}
    assert services["migrate"]["command"][:3] == ["python", "manage.py", "migrate"]


def test_gpu_workers_each_have_their_own_device():
    spec = compose()
    ids = []
    for service in app_services(spec).values():
        devices = (((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices")
        if devices:
            assert service["image"] == "shop-search:cuda" and "count" not in devices[0]
            ids += devices[0]["device_ids"]
            assert service["environment"]["SEARCH_DEVICE"] == "cuda"
    assert ids and len(ids) == len(set(ids)), f"GPU workers share a device: {ids}"
    assert {s["image"] for n, s in app_services(spec).items() if n in ("web", "beat", "migrate")} == {"shop-search:cpu"}


# --- the environment against the code that reads it --------------------------------------
def test_every_app_service_sets_only_settings_the_code_reads():
    known = environment_names() | set(RUNTIME_VARIABLES)
    for name, service in app_services(compose()).items():
        unknown = set(service.get("environment") or {}) - known
        assert not unknown, f"{name} sets {sorted(unknown)}, which no setting reads"


def test_env_example_lists_every_setting_and_nothing_else():
    listed = env_example()
    settings_names = environment_names()
    compose_only = interpolated() - settings_names | {"COMPOSE_PROFILES"}
    missing = settings_names - set(listed)
    assert not missing, f".env.example does not list {sorted(missing)}"
    unknown = set(listed) - settings_names - compose_only
    assert not unknown, f".env.example lists {sorted(unknown)}, which neither the code nor docker-compose.yml reads"
    undocumented = interpolated() - set(listed)
    assert not undocumented, f"docker-compose.yml interpolates {sorted(undocumented)}, missing from .env.example"
    # the four secrets are the only values left to fill in; none of them has a default
    secrets = {"DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "QDRANT_API_KEY"}
    text = COMPOSE.read_text(encoding="utf-8")
    for secret in secrets:
        assert listed[secret] == "" and re.search(rf"\${{{secret}:\?", text), secret
    assert "shop:shop@" not in text and "requirepass" in text


def test_the_settings_start_with_the_web_services_environment(tmp_path):
    """Django starts, and `check --deploy` passes, with what compose gives the web container."""
    spec = compose()
    import secrets

    values = {
        name: secrets.token_urlsafe(50)
        for name in ("DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "QDRANT_API_KEY")
    }
    values.update({k: v for k, v in env_example().items() if v})
    env = {}
    for key, value in (spec["services"]["web"]["environment"] or {}).items():
        env[key] = re.sub(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}", lambda m: values.get(m.group(1), ""), str(value))
    env.update(values)
    env.update({"PATH": os.environ["PATH"], "SHOP_SEARCH_VAR_DIR": str(tmp_path), "STATIC_ROOT": str(tmp_path / "s")})
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_app_command_names_things_that_exist():
    from django.conf import settings
    from django.core.management import get_commands

    queues = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()} | {"celery"}
    for name, service in app_services(compose()).items():
        command = service["command"]
        assert isinstance(command, list), f"{name}: an exec-form command, so signals reach the program"
        if command[:2] == ["python", "manage.py"]:
            assert command[2] in get_commands(), f"{name}: no management command {command[2]}"
        elif command[0] == "celery":
            assert command[1:3] == ["-A", "shop_search"] and importlib.util.find_spec("shop_search.celery")
            asked = set(command[command.index("-Q") + 1].split(","))
            assert asked <= queues, f"{name} consumes {asked - queues}, which no task is routed to"
            if "--beat" in command:
                schedule = command[command.index("--schedule") + 1]
                mounts = [m.split(":")[1] for m in service["volumes"]]
                assert any(schedule.startswith(m.rstrip("/") + "/") for m in mounts), (
                    f"{name} keeps its schedule outside its volumes"
                )
        elif command[0] == "gunicorn":
            config = command[command.index("--config") + 1].removeprefix("python:")
            assert importlib.import_module(config).worker_class == "gthread"
            assert importlib.util.find_spec(command[-1])
        else:
            pytest.fail(f"{name}: unexpected command {command}")
    served = [s for s in app_services(compose()).values() if s["command"][0] == "gunicorn"]
    assert served and all("healthz" in " ".join(s["healthcheck"]["test"]) for s in served)


# --- versions kept in step ------------------------------------------------------------------
def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _locked() -> dict[str, str]:
    text = (ROOT / "requirements" / "production.lock").read_text(encoding="utf-8")
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", text, re.M)}


def test_the_qdrant_server_image_is_the_client_pins_minor():
    client = next(Requirement(r) for r in _pyproject()["project"]["dependencies"] if r.startswith("qdrant-client"))
    low = next(Version(s.version) for s in client.specifier if s.operator == ">=")
    high = next(Version(s.version) for s in client.specifier if s.operator == "<")
    assert (high.major, high.minor) == (low.major, low.minor + 1), f"pin qdrant-client to one minor: {client}"
    images = [s["image"] for s in compose()["services"].values() if str(s.get("image", "")).startswith("qdrant/")]
    assert len(images) == 3
    for image in images:
        tag = Version(image.split(":v")[1])
        assert (tag.major, tag.minor) == (low.major, low.minor), f"{image} against {client}"
    for pinned in (_locked()["qdrant-client"], version("qdrant-client")):
        assert Version(pinned) in client.specifier, f"qdrant-client {pinned} against {client}"


def test_the_lock_file_pins_every_dependency_within_pyproject():
    project = _pyproject()["project"]
    needed = (
        project["dependencies"] + project["optional-dependencies"]["server"] + project["optional-dependencies"]["s3"]
    )
    locked = _locked()
    for line in needed:
        requirement = Requirement(line)
        name = requirement.name.lower()
        if name == "torch":  # installed by the Dockerfile from the index of the image's build
            continue
        assert name in locked, f"{name} is not in requirements/production.lock (bash requirements/lock.sh)"
        assert Version(locked[name]) in requirement.specifier, f"{name}=={locked[name]} against {requirement}"
    assert "torch" not in locked and not any(n.startswith("nvidia-") for n in locked)
    torch = next(Requirement(r) for r in project["dependencies"] if r.startswith("torch"))
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    image_torch = re.search(r"ARG TORCH_VERSION=(\S+)", dockerfile).group(1)
    tests_torch = re.search(r"TORCH_SPEC \?= torch==(\S+)", (ROOT / "Makefile").read_text(encoding="utf-8")).group(1)
    assert image_torch == tests_torch and Version(image_torch) in torch.specifier


# --- the Dockerfile ------------------------------------------------------------------------------
def test_the_dockerfile_passes_hadolint_and_installs_dependencies_before_the_code():
    result = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
    first = lambda pattern: next(i for i, line in enumerate(lines) if re.search(pattern, line))  # noqa: E731
    assert (
        first(r"pip install .*torch==")
        < first(r"pip install .*--require-hashes -r requirements/production.lock")
        < first(r"^COPY (shop_search|catalog|search|lab)\b")
    )
    assert first(r"^USER ") > first(r"^COPY static"), "the app runs as its own user"


# --- the web command, served here ---------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.live
def test_gunicorn_serves_the_app_as_compose_starts_it_and_stops_on_sigterm(tmp_path, tiny_model_dir, stack_database):
    command = compose()["services"]["web"]["command"]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "QDRANT_URL")}
    env.update(
        {
            "DATABASE_URL": stack_database.url,
            "SHOP_SEARCH_VAR_DIR": str(tmp_path / "var"),
            "QDRANT_PATH": str(tmp_path / "var" / "qdrant"),
            "SEARCH_EMBEDDING_MODEL": str(tiny_model_dir),
            "SEARCH_DEVICE": "cpu",
            "LOG_LEVEL": "WARNING",
            "WEB_BIND": f"127.0.0.1:{port}",
            "WEB_WORKERS": "2",  # the default, on the embedded store: served by one process
            "WEB_THREADS": "4",
            "DJANGO_SETTINGS_MODULE": "shop_search.settings",
        }
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    executable = shutil.which(command[0], path=str(BIN))
    server = subprocess.Popen(
        [executable, *command[1:]], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = urllib.request.urlopen(base + "/healthz", timeout=5)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()[-3000:]
                time.sleep(0.3)
        assert health.status == 200 and health.read() == b"ok"
        page = urllib.request.urlopen(base + "/?q=mug", timeout=60)
        assert page.status == 200 and b"<form" in page.read()
        # a request naming another host: refused, and no debug page with the settings (issue 29)
        foreign = urllib.request.Request(base + "/?q=mug", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(foreign, timeout=60)
        body = refused.value.read()
        assert refused.value.code == 400 and b"DisallowedHost" not in body and b"SECRET_KEY" not in body
        # every search answers: a second worker could not open the embedded store (503 to half of them)
        for n in range(12):
            assert urllib.request.urlopen(f"{base}/api/search?q=mug{n}", timeout=60).status == 200
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            server.kill()
            pytest.fail("gunicorn did not stop on SIGTERM within its graceful timeout")
    output = server.stdout.read()
    assert code == 0, output[-3000:]
    assert "gthread" in output and "Shutting down" in output, output[-3000:]
    assert "serving with 1 worker of 8 threads instead of 2 x 4" in output
    assert shlex.join(command).startswith("gunicorn --config python:shop_search.gunicorn")
