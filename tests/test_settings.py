"""Settings: bad values stop start-up with a message that says what to write."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shop_search.settings import secret_key_problem


@pytest.mark.parametrize(
    "value, expected",
    [
        ("text=abc", "write modality=weight pairs"),
        ("text=0,image=0", "search.E002"),
        ("colour=1", "search.E002"),
    ],
)
def test_bad_fusion_weights_stop_start_up_with_the_fix(value, expected):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "SEARCH_FUSION_WEIGHTS": value, "DJANGO_SETTINGS_MODULE": "shop_search.settings"}
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode != 0 and expected in done.stdout + done.stderr


def test_embedded_default_runs_tasks_in_process_without_any_broker():
    # given: no broker configured (the embedded default)
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    code = (
        "import django; django.setup()\n"
        "from django.conf import settings\n"
        "from shop_search.celery import app\n"
        "from search.tasks import embed_products_task\n"
        "assert settings.CELERY_TASK_ALWAYS_EAGER and app.conf.broker_url.startswith('memory://')\n"
        "print(embed_products_task.apply_async(args=[[]]).get())\n"
    )
    # when: a task is sent
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        env={**env, "DJANGO_SETTINGS_MODULE": "shop_search.settings", "LOG_LEVEL": "WARNING"},
    )
    # then: it ran here, and nothing looked for an AMQP server
    assert done.returncode == 0, done.stderr
    assert "'indexed': 0" in done.stdout and "hostname" not in done.stderr


@pytest.mark.parametrize("value, expected", [(None, "1"), ("0", "default"), ("2", "2")])
def test_the_web_server_encodes_queries_on_one_torch_thread_unless_told(value, expected, tmp_path):
    # torch's default (a thread per core) multiplies a query's time when the machine is busy
    # (benchmarks/query_encoding.py); a worker or a command keeps the default
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "SEARCH_SERVE_TORCH_THREADS")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "shop_search.settings",
            "LOG_LEVEL": "WARNING",
            "SEARCH_EMBEDDED_SWEEP_SECONDS": "0",
            "SHOP_SEARCH_VAR_DIR": str(tmp_path),
        }
    )
    if value is not None:
        env["SEARCH_SERVE_TORCH_THREADS"] = value

    def threads(code: str) -> str:
        done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()[-1]

    default = threads("import django, torch; django.setup(); print(torch.get_num_threads())")  # a command
    served = threads("import shop_search.wsgi, torch; print(torch.get_num_threads())")
    assert served == (default if expected == "default" else expected)


def _django(code: str, **env: str) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[1]
    # (the browser tests set DJANGO_ALLOW_ASYNC_UNSAFE in this process: never a production setting)
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_DEBUG", "DJANGO_SECRET_KEY", "DJANGO_HTTPS", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    return subprocess.run(
        [sys.executable, *code.split()] if code.startswith("manage.py") else [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        env={**base, "DJANGO_SETTINGS_MODULE": "shop_search.settings", "LOG_LEVEL": "WARNING", **env},
    )


STRONG = "k3y-" + "x7Q9pL2vR8sT4wZ6yB1nM5cD0fG3hJ9kE2uA7iO4" * 2


def test_debug_mode_is_on_only_when_asked_for_and_the_demo_has_a_key_of_its_own(tmp_path):
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.DEBUG, settings.HTTPS, settings.SECRET_KEY)"
    )
    var = {"SHOP_SEARCH_VAR_DIR": str(tmp_path / "var")}
    first = _django(code, **var).stdout.split()
    assert first[:2] == ["False", "False"]  # the embedded default: no debug pages, plain http on this machine
    key = first[2]
    assert not secret_key_problem(key) and key == (tmp_path / "var" / "secret_key").read_text()
    assert _django(code, **var).stdout.split()[2] == key  # kept: sign-ins survive a restart
    assert _django(code, SHOP_SEARCH_VAR_DIR=str(tmp_path / "other")).stdout.split()[2] != key
    assert oct((tmp_path / "var" / "secret_key").stat().st_mode & 0o777) == "0o600"
    assert _django(code, DJANGO_SECRET_KEY=STRONG).stdout.split()[:2] == ["False", "True"]
    assert _django(code, DJANGO_DEBUG="1", **var).stdout.split()[0] == "True"


def test_a_request_for_another_host_is_refused_without_a_debug_page(client, db, caplog):
    response = client.get("/?q=mug", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert b"SECRET_KEY" not in response.content and b"Traceback" not in response.content
    # the log says so in one line (scanners ask by IP address all day), no traceback
    said = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert said and all(r.levelname == "WARNING" and r.exc_info is None for r in said)
    assert "evil.example" in said[0].getMessage()


@pytest.mark.parametrize("key", ["change-me", "django-insecure-abc", "short-but-random-Q9x", "a" * 60])
def test_production_refuses_a_known_or_weak_key_and_says_how_to_make_one(key):
    done = _django("import django; django.setup()", DJANGO_SECRET_KEY=key)
    assert done.returncode != 0 and "secrets.token_urlsafe(50)" in done.stderr


def test_the_production_profile_passes_the_deployment_check_with_no_warning():
    done = _django("manage.py check --deploy --fail-level WARNING", DJANGO_SECRET_KEY=STRONG)
    assert done.returncode == 0 and "no issues" in done.stdout, done.stdout + done.stderr


def test_pages_carry_a_content_security_policy_and_https_only_headers(client, settings, db):
    settings.SECURE_HSTS_SECONDS = 31536000
    response = client.get("/", secure=True)
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")
    assert response["X-Content-Type-Options"] == "nosniff" and response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"


def test_a_bucket_in_the_environment_puts_product_images_on_s3_and_lets_pages_show_them():
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "from django.core.files.storage import default_storage as storage; "
        "print(storage.__class__.__name__, settings.SERVE_MEDIA, settings.MEDIA_ORIGIN)"
    )
    done = _django(code, AWS_STORAGE_BUCKET_NAME="shop-media", AWS_S3_REGION_NAME="eu-west-1")
    assert done.returncode == 0, done.stderr
    backend, serve, origin = done.stdout.split(" ", 2)
    assert backend == "S3Storage" and serve == "False"
    assert origin.split() == ["https://shop-media.s3.amazonaws.com", "https://shop-media.s3.eu-west-1.amazonaws.com"]
    minio = _django(
        "import django; django.setup(); from django.conf import settings; print(settings.MEDIA_ORIGIN)",
        AWS_STORAGE_BUCKET_NAME="shop-media",
        AWS_S3_ENDPOINT_URL="http://minio:9000/",
    )
    assert minio.stdout.strip() == "http://minio:9000"


@pytest.mark.parametrize("shards, replicas, consistency", [("0", "1", "1"), ("3", "1", "2")])
def test_a_qdrant_cluster_layout_that_cannot_work_stops_start_up_with_why(shards, replicas, consistency):
    done = _django(
        "import django; django.setup()",
        QDRANT_SHARD_NUMBER=shards,
        QDRANT_REPLICATION_FACTOR=replicas,
        QDRANT_WRITE_CONSISTENCY_FACTOR=consistency,
    )
    assert done.returncode != 0 and "no more than the replication factor" in done.stderr


def test_a_decode_look_ahead_that_is_not_a_number_stops_start_up_with_the_fix():
    done = _django("import django; django.setup()", SEARCH_DECODE_AHEAD="lots")
    assert (
        done.returncode != 0
        and "SEARCH_DECODE_AHEAD='lots' is not understood: it takes auto or a whole number" in done.stderr
    )


def test_every_way_of_saying_yes_or_no_means_the_same_to_every_setting():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SEARCH_LOG_DEFERRED, s.CATALOG_IMAGE_URL_ALLOW_PRIVATE, s.SEARCH_SETTLE_SECONDS, "
        "s.SEARCH_PHOTO_DAYS, s.SEARCH_EMBEDDED_SWEEP_SECONDS)"
    )
    # (SEARCH_LOG_DEFERRED=off used to leave deferral on, and ...ALLOW_PRIVATE=on to leave it off)
    off_on = _django(
        code,
        SEARCH_LOG_DEFERRED="off",
        CATALOG_IMAGE_URL_ALLOW_PRIVATE="on",
        SEARCH_SETTLE_SECONDS="500ms",
        SEARCH_PHOTO_DAYS="3",
        SEARCH_EMBEDDED_SWEEP_SECONDS="1m",
    )
    assert off_on.returncode == 0, off_on.stderr
    assert off_on.stdout.split()[-5:] == ["False", "True", "0.5", "3.0", "60.0"]
    no_yes = _django(code, SEARCH_LOG_DEFERRED="No", CATALOG_IMAGE_URL_ALLOW_PRIVATE="YES")
    assert no_yes.stdout.split()[-5:-3] == ["False", "True"]
    defaults = _django(code, SEARCH_LOG_DEFERRED="", CATALOG_IMAGE_URL_ALLOW_PRIVATE="")
    assert defaults.stdout.split()[-5:] == ["True", "False", "2.0", "7.0", "2.0"]


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SEARCH_LOG_DEFERRED", "maybe", "it takes 1/0, true/false, yes/no or on/off"),
        ("SEARCH_CANDIDATES", "many", "it takes a whole number"),
        ("SEARCH_SETTLE_SECONDS", "soon", 'it takes a duration: seconds ("20"), or with a unit'),
        ("SEARCH_CUTOFF_QUANTILE", "high", "it takes a number"),
        ("SEARCH_VECTOR_ENGINE", "faiss", "it takes one of edge, local"),
        ("CATALOG_IMAGE_FETCH_TIMEOUT", "15", "CATALOG_IMAGE_FETCH_TIMEOUT is gone: CATALOG_IMAGE_FETCH_SECONDS"),
    ],
)
def test_a_value_the_settings_do_not_understand_stops_start_up_naming_it(name, value, says):
    done = _django("import django; django.setup()", **{name: value})
    assert done.returncode != 0 and says in done.stderr
    assert name in done.stderr
    # a command says just that, not a traceback
    command = _django("manage.py check", **{name: value})
    assert command.returncode != 0 and command.stderr.startswith("Configuration error: ")
    assert says in command.stderr and "Traceback" not in command.stderr


@pytest.mark.parametrize("value", ["off", "0", "false", "No"])
def test_the_fusion_calibration_is_off_however_no_is_said(value):
    code = "import django; django.setup(); from django.conf import settings; print(settings.SEARCH_FUSION_CALIBRATION)"
    done = _django(code, SEARCH_FUSION_CALIBRATION=value)
    assert done.returncode == 0 and done.stdout.split()[-1] == "off"


def test_the_configuration_table_names_every_variable_the_code_reads_and_no_other():
    import re

    from shop_search.environment import environment_names

    root = Path(__file__).resolve().parents[1]
    table = (root / "docs" / "configuration.md").read_text(encoding="utf-8")
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    named = {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]{2,})`", cell)}
    read = environment_names()
    assert not read - named, f"docs/configuration.md does not list {sorted(read - named)}"
    assert not named - read, f"docs/configuration.md lists what no code reads: {sorted(named - read)}"


def test_a_locale_babel_does_not_know_stops_start_up_with_the_fix():
    done = _django("import django; django.setup()", CATALOG_LOCALE="xx_NOWHERE")
    assert done.returncode != 0 and "CATALOG_LOCALE='xx_NOWHERE' is not understood: it takes a locale" in done.stderr
    done = _django(
        "import django; django.setup(); from django.conf import settings; print(settings.CATALOG_LOCALE)",
        CATALOG_LOCALE="de-DE",
    )
    assert done.returncode == 0 and done.stdout.strip() == "de_DE"
