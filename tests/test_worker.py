"""The real stack's queue: a real Redis broker and a real Celery worker in subprocesses.

The "web" side runs as its own process too (manage.py), so nothing is shared with the
worker but the database, the broker and the Qdrant storage, as in production.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.stack_redis import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.worker


def status_of(db, sku: str) -> str | None:
    rows = db.rows("SELECT index_status FROM catalog_product WHERE sku = ?", sku)
    return rows[0][0] if rows else None


def wait_for_indexed(db, sku: str, worker: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and status_of(db, sku) != "indexed":
        assert worker.poll() is None, log.read_text()[-3000:]
        time.sleep(0.5)
    assert status_of(db, sku) == "indexed", log.read_text()[-3000:]


def test_a_product_saved_by_the_web_process_is_indexed_by_a_worker(tmp_path, redis_url, tiny_model_dir, stack_database):
    # given: a migrated database and a worker listening on the embeddings queue
    db = stack_database
    env = {
        **os.environ,
        "DATABASE_URL": db.url,
        "CELERY_BROKER_URL": redis_url,
        "QDRANT_PATH": str(tmp_path / "qdrant"),
        "SEARCH_EMBEDDING_MODEL": str(tiny_model_dir),
        "SEARCH_DEVICE": "cpu",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "SHOP_SEARCH_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "shop_search.settings",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run(manage + ["migrate", "-v0"], env=env, cwd=ROOT, check=True)
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "shop_search",
            "worker",
            "-Q",
            "embeddings,celery",
            "--concurrency",
            "1",
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # when: the web process saves a product (the queue is real, not eager)
        subprocess.run(
            manage
            + [
                "shell",
                "-v0",
                "-c",
                "from catalog.services import product_create;"
                "product_create(sku='W-1', title='Red striped mug', price=12)",
            ],
            env=env,
            cwd=ROOT,
            check=True,
            timeout=120,
        )
        assert status_of(db, "W-1") == "pending"

        # then: the worker embeds it and records the state
        wait_for_indexed(db, "W-1", worker, tmp_path / "worker.log")

    finally:
        worker.terminate()
        worker.wait(timeout=60)
        log.close()

    # and the point is in the embedded store the worker wrote (opened once the worker let go)
    from search.retrieval.vector_store.edge import EdgeIndex

    index = EdgeIndex(tmp_path / "qdrant" / "products")
    try:
        ((product_id,),) = db.rows("SELECT id FROM catalog_product WHERE sku='W-1'")
        assert set(index.retrieve([product_id])[product_id].vector) == {"text", "avg"}
        assert "embed_products_task" in (tmp_path / "worker.log").read_text()
    finally:
        index.close()


def _web_env(tmp_path, redis_url, tiny_model_dir, db) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": db.url,
        "CELERY_BROKER_URL": redis_url,
        "QDRANT_PATH": str(tmp_path / "qdrant"),
        "SEARCH_EMBEDDING_MODEL": str(tiny_model_dir),
        "SEARCH_DEVICE": "cpu",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "LOG_LEVEL": "WARNING",
        "SHOP_SEARCH_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "shop_search.settings",
    }


def test_the_sweep_does_not_send_again_what_is_queued_and_an_outage_is_said(
    tmp_path, redis_url, tiny_model_dir, stack_database
):
    import redis

    env = _web_env(tmp_path, redis_url, tiny_model_dir, stack_database)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run(manage + ["migrate", "-v0"], env=env, cwd=ROOT, check=True)

    def shell(code: str) -> str:
        done = subprocess.run(
            manage + ["shell", "-v0", "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    # given: a saved product whose task waits in the broker (no worker is running)
    shell("from catalog.services import product_create; product_create(sku='Q-1', title='Red mug', price=3)")
    broker = redis.Redis.from_url(redis_url)
    assert broker.llen("embeddings") == 1
    # when: the sweep runs three times, past the grace period
    for _ in range(3):
        shell("from search.tasks import products_sweep_pending; print(products_sweep_pending(grace_seconds=0))")
    # then: the message already queued is not doubled
    assert broker.llen("embeddings") == 1
    # once it may be lost (the redelivery window has passed), the sweep sends it again
    env["SEARCH_QUEUE_REDELIVERY_SECONDS"] = "0"
    assert (
        shell("from search.tasks import products_sweep_pending; print(products_sweep_pending(grace_seconds=0))").strip()
        == "1"
    )
    assert broker.llen("embeddings") == 2

    # a broker outage: the command says so, fails, and the rows stay pending
    env["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    started = time.monotonic()
    done = subprocess.run(
        manage + ["index_products", "--dirty", "--queue"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and time.monotonic() - started < 60
    assert "Could not queue 1 of 1 products: the broker did not take them" in done.stderr
    assert status_of(stack_database, "Q-1") == "pending"


def test_a_task_whose_worker_is_killed_is_delivered_again_within_the_visibility_timeout(
    tmp_path, redis_url, tiny_model_dir, stack_database
):
    import signal

    db = stack_database
    env = {**_web_env(tmp_path, redis_url, tiny_model_dir, db), "SEARCH_QUEUE_VISIBILITY_SECONDS": "8"}
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run(manage + ["migrate", "-v0"], env=env, cwd=ROOT, check=True)
    subprocess.run(
        manage
        + [
            "shell",
            "-v0",
            "-c",
            "from catalog.services import product_create;product_create(sku='K-1', title='Red mug', price=3)",
        ],
        env=env,
        cwd=ROOT,
        check=True,
    )

    def worker(name: str) -> tuple[subprocess.Popen, Path]:
        path = tmp_path / f"{name}.log"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "shop_search",
                "worker",
                "-Q",
                "embeddings",
                "-n",
                f"{name}@%h",
                "--concurrency",
                "1",
                "-l",
                "info",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env=env,
            cwd=ROOT,
            stdout=path.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return proc, path

    # given: the task is running in a worker, held at its last step (the database is locked)
    with db.products_held():
        first, first_log = worker("first")
        deadline = time.monotonic() + 120
        while "embed_products_task" not in first_log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)  # the model loads, the product is encoded, its state write waits for the lock
        # when: the whole worker is killed (kill -9: no chance to give the message back)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        killed = time.monotonic()
    assert status_of(db, "K-1") == "pending"
    # then: after the visibility timeout, another worker gets the message and indexes the product
    time.sleep(9)
    second, second_log = worker("second")
    try:
        wait_for_indexed(db, "K-1", second, second_log, timeout=90)
        assert time.monotonic() - killed < 100  # minutes at most, not Redis's default hour
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=60)


def test_an_admin_import_runs_in_a_worker(tmp_path, redis_url, tiny_model_dir, stack_database):
    db = stack_database
    env = _web_env(tmp_path, redis_url, tiny_model_dir, db)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run(manage + ["migrate", "-v0"], env=env, cwd=ROOT, check=True)
    log_path = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "shop_search",
            "worker",
            "-Q",
            "embeddings,celery",
            "--concurrency",
            "1",
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        cwd=ROOT,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        # the admin's request: keep the upload, queue the job, answer
        subprocess.run(
            manage
            + [
                "shell",
                "-v0",
                "-c",
                "from django.core.files.uploadedfile import SimpleUploadedFile;"
                "from catalog.services import import_job_start;"
                "import_job_start(upload=SimpleUploadedFile('c.csv', "
                "b'sku,title,price\\nI-1,Red mug,3\\nI-2,,4\\n'))",
            ],
            env=env,
            cwd=ROOT,
            check=True,
            timeout=120,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ((status, report),) = db.rows("SELECT status, report FROM catalog_importjob")
            if status in ("done", "failed"):
                break
            assert worker.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.3)
        assert status == "done", log_path.read_text()[-3000:]
        report = report if isinstance(report, str) else json.dumps(report)  # PostgreSQL's jsonb comes decoded
        assert "3 lines: 1 header, 1 created, 0 updated, 0 unchanged, 1 not imported (1 error)" in report
        wait_for_indexed(db, "I-1", worker, log_path)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
