"""The embedded default when its database or disk cannot take a write (issue 29): a database held
by another process for longer than SQLite waits (a backup, a long terminal transaction), and a
full file system. Before, new visitors' searches, clicks, admin saves and login answered 500, and
searches went unlogged. Now shoppers keep searching, the log and clicks wait in the server and
are written once the database is free, and writes answer 503 with the reason and Retry-After.

A live server in its own process, its SQLite database and var/ on a small tmpfs of their own so
that the disk really fills (mounting one needs root: the test is skipped where it cannot)."""

from __future__ import annotations

import contextlib
import errno
import http.cookiejar
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import png_bytes
from tests.stack_redis import free_port
from tests.test_concurrency import Merchandiser, NoRedirect

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.live


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.fixture
def shop_on_small_disk(small_disk, tmp_path, tiny_model_dir):
    """The database and media on the small disk; the vector store beside it (see the last test)."""
    yield from _shop(small_disk, tmp_path, tiny_model_dir, store=tmp_path / "qdrant")


@pytest.fixture
def store_on_small_disk(small_disk, tmp_path, tiny_model_dir):
    yield from _shop(small_disk, tmp_path, tiny_model_dir, store=small_disk / "var" / "qdrant")


def _shop(small_disk: Path, tmp_path: Path, tiny_model_dir: Path, *, store: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "QDRANT_URL")}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{small_disk / 'db.sqlite3'}",
            "SQLITE_BUSY_SECONDS": "2",
            "DJANGO_SETTINGS_MODULE": "shop_search.settings",
            "SHOP_SEARCH_VAR_DIR": str(small_disk / "var"),
            "QDRANT_PATH": str(store),
            "SEARCH_EMBEDDING_MODEL": str(tiny_model_dir),
            "SEARCH_DEVICE": "cpu",
            "LOG_LEVEL": "WARNING",
            "DJANGO_SUPERUSER_PASSWORD": "pw-staff-1",
            "SEARCH_RATE_LIMITS": "",
        }
    )
    manage = [sys.executable, "manage.py"]

    def run(*args: str) -> None:
        subprocess.run(
            manage + list(args), cwd=ROOT, env=env, check=True, timeout=300, stdout=subprocess.DEVNULL, stderr=log
        )

    log_path = tmp_path / "server.log"
    log = log_path.open("w")
    run("migrate", "-v0")
    run("createsuperuser", "--noinput", "--username", "staff", "--email", "staff@example.com")
    run("generate_catalog", str(tmp_path / "sample"), "--products", "20", "--seed", "3", "--queries", "0", "-v0")
    run("import_catalog", str(tmp_path / "sample" / "catalog.jsonl"), "-v0")
    port = free_port()
    with log:
        server = subprocess.Popen(
            manage + ["runserver", f"127.0.0.1:{port}", "--noreload"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                # not the storefront: its search would be logged by the writer thread after the
                # test has counted the searches before its own (seen once in CI: 4 written, 3 counted)
                urllib.request.urlopen(base + "/admin/login/", timeout=5).read()
                break
            assert server.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.3)
        yield {"base": base, "db": small_disk / "db.sqlite3", "disk": small_disk, "log": log_path, "server": server}
        server.terminate()
        server.wait(timeout=30)


def call(url: str, *, body: dict | None = None, session: str = "") -> tuple[int, dict, str]:
    """A request from a new visitor (no cookies): status, headers, text."""
    headers = {"Content-Type": "application/json", **({"X-Session-Id": session} if session else {})}
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=60) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def rows(db: Path, sql: str) -> int:
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        return conn.execute(sql).fetchone()[0]


def eventually(check, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return check()


def login_status(base: str) -> tuple[int, str]:
    """Sign in to the admin as a browser would: the status and the text of the answer."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), NoRedirect())
    page = opener.open(base + "/admin/login/", timeout=60).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = {"username": "staff", "password": "pw-staff-1", "csrfmiddlewaretoken": token}
    request = urllib.request.Request(
        base + "/admin/login/", data=urllib.parse.urlencode(form).encode(), headers={"Referer": base + "/admin/login/"}
    )
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def photo_search_page(base: str) -> tuple[int, str]:
    """A new visitor's photo search from the storefront's form (its CSRF token and cookie)."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    page = opener.open(base + "/", timeout=60).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    boundary = "----outage-test"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n{token}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png_bytes("red")
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        base + "/search/image",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "Referer": base + "/"},
    )
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_shoppers_keep_searching_through_a_held_database_and_nothing_is_lost(shop_on_small_disk):
    shop = shop_on_small_disk
    base, db = shop["base"], shop["db"]
    searches_before = rows(db, "SELECT count(*) FROM search_searchevent")

    holder = sqlite3.connect(db, timeout=5, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock (a backup, a long import)
    try:
        status, headers, page = call(base + "/?q=mug")
        assert status == 200 and "result" in page
        assert "visit=" in headers.get("Set-Cookie", "")
        # browsing (the tiny random model matches little by words)
        status, _, body = call(base + "/api/search?q=", session="shopper-1")
        assert status == 200
        found = json.loads(body)
        click = {"search_id": found["search_id"], "product_id": found["results"][0]["id"]}
        status, _, body = call(base + "/api/clicks", body=click, session="shopper-1")
        assert status == 202 and json.loads(body)["queued"] is True, body
        status, text = login_status(base)
        assert status == 503 and "held by another task" in text and "Try again in 30 seconds" in text
        assert "Back to the admin" in text
        status, page = photo_search_page(base)  # a photo must be kept for its URL: it says so
        assert status == 200 and "Photo search is busy for a moment: please try again in 30 seconds" in page
        time.sleep(1)
        released = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    # written once the database is free, the click with its search
    # the storefront search, the API's, and the home page the photo search was made from
    searches = "SELECT count(*) FROM search_searchevent"
    assert eventually(lambda: rows(db, searches) == searches_before + 3), (searches_before, rows(db, searches))
    assert eventually(lambda: rows(db, "SELECT count(*) FROM search_click") == 1)
    assert rows(db, "SELECT click_count FROM search_searchevent WHERE click_count > 0") == 1
    # stamped when they happened, not when the database let them be written
    assert rows(db, f"SELECT count(*) FROM search_click WHERE created_at < '{released}'") == 1
    new = f"SELECT count(*) FROM search_searchevent WHERE created_at < '{released}'"
    assert rows(db, new) == searches_before + 3
    assert login_status(base)[0] == 302
    assert "Internal Server Error" not in shop["log"].read_text()


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * (1 << 20))
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_on_a_full_disk_shoppers_keep_searching_and_saves_say_why(shop_on_small_disk):
    shop = shop_on_small_disk
    base, db = shop["base"], shop["db"]
    merchandiser = Merchandiser(base)
    searches_before = rows(db, "SELECT count(*) FROM search_searchevent")
    products_before = rows(db, "SELECT count(*) FROM catalog_product")

    filler = fill(shop["disk"])
    try:
        for query in ("mug", "vase", "lamp"):
            status, _, page = call(base + f"/?q={query}")
            assert status == 200 and "result" in page
        add = {
            "sku": "FULL-1",
            "title": "Red mug",
            "price": "5.00",
            "currency": "USD",
            "attributes": "{}",
            "active": "on",
            "category": "mugs",
        }
        status = merchandiser.post(
            "/admin/catalog/product/add/",
            add,
            form_url="/admin/catalog/product/add/",
            files={"image": ("mug.png", png_bytes("red", size=(400, 400)))},
        )
        assert status == 503
    finally:
        filler.unlink()
    assert rows(db, "SELECT count(*) FROM catalog_product") == products_before  # nothing half-saved
    assert eventually(lambda: rows(db, "SELECT count(*) FROM search_searchevent") == searches_before + 3)
    log = shop["log"].read_text()
    assert "disk is full" in log and "Internal Server Error" not in log


def test_a_vector_store_with_no_room_to_grow_stops_with_its_reason_instead_of_a_sigbus(store_on_small_disk):
    """The store's files are sparse (270 MB long, under 1 MB held when new) and the engine writes
    through memory maps: on a disk smaller than they may grow, the server died of SIGBUS with no
    log line. Now nothing is written to such a store; search says why, the server keeps running."""
    shop = store_on_small_disk
    status, headers, body = call(shop["base"] + "/api/search?q=mug")
    assert status == 503 and "the server's disk has no room for the search index" in body
    status, _, page = call(shop["base"] + "/")  # browsing needs no store
    assert status == 200
    assert rows(shop["db"], "SELECT count(*) FROM catalog_product WHERE index_status = 'pending'") == 20
    time.sleep(3)  # the embedded sweep tries the store again meanwhile
    assert shop["server"].poll() is None
    log = shop["log"].read_text()
    assert "cannot grow" in log and "free space on that disk or move QDRANT_PATH" in log
