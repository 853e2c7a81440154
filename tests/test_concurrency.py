"""The embedded default under a small shop's load: a live server on SQLite, shoppers searching
(each search writes the search log) while merchandisers save products in the admin."""
from __future__ import annotations

import http.cookiejar
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.live

SHOPPERS = 16
MERCHANDISERS = 2
SAVES_EACH = 15
QUERIES = ["red mug", "blue vase", "green wool scarf", "striped socks", "lamp", "water bottle"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_shop(tmp_path, tiny_model_dir):
    """A migrated embedded-default instance with a small catalog and a staff user, served by
    `manage.py runserver` (threaded) in its own process."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "QDRANT_URL")}
    env.update({"DJANGO_SETTINGS_MODULE": "shop_search.settings", "SHOP_SEARCH_VAR_DIR": str(tmp_path / "var"),
                "QDRANT_PATH": str(tmp_path / "var" / "qdrant"), "SEARCH_EMBEDDING_MODEL": str(tiny_model_dir),
                "SEARCH_DEVICE": "cpu", "LOG_LEVEL": "WARNING", "DJANGO_SUPERUSER_PASSWORD": "pw-staff-1"})
    manage = [sys.executable, "manage.py"]

    def run(*args: str) -> None:
        subprocess.run(manage + list(args), cwd=ROOT, env=env, check=True, timeout=300,
                       stdout=subprocess.DEVNULL)

    run("migrate", "-v0")
    run("createsuperuser", "--noinput", "--username", "staff", "--email", "staff@example.com")
    run("generate_catalog", str(tmp_path / "sample"), "--products", "40", "--seed", "3", "--queries", "0", "-v0")
    run("import_catalog", str(tmp_path / "sample" / "catalog.jsonl"), "-v0")
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(manage + ["runserver", f"127.0.0.1:{port}", "--noreload"], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "/api/search?q=mug", timeout=5).read()
            break
        except OSError:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(0.3)
    yield {"base": base, "db": tmp_path / "var" / "db.sqlite3", "log": tmp_path / "server.log"}
    server.terminate()
    server.wait(timeout=30)
    log.close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """A saved admin form answers 302; an invalid one 200 with its errors: keep them apart."""

    def redirect_request(self, *args, **kwargs):
        return None


class Merchandiser:
    """A logged-in admin session (its own cookies and CSRF token)."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
                                                  NoRedirect())
        status = self.post("/admin/login/?next=/admin/", {"username": "staff", "password": "pw-staff-1",
                                                          "next": "/admin/"}, form_url="/admin/login/")
        assert status == 302, f"admin login answered {status}"

    def post(self, url: str, data: dict, *, form_url: str) -> int:
        page = self.opener.open(self.base + form_url, timeout=60).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": token}).encode()
        request = urllib.request.Request(self.base + url, data=body, headers={"Referer": self.base + form_url})
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code


def test_admin_saves_and_searches_all_succeed_under_concurrent_shoppers(live_shop):
    base = live_shop["base"]
    statuses: Counter = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    saving = threading.Event()
    saving.set()
    skus = [f"LIVE-{m}-{i}" for m in range(MERCHANDISERS) for i in range(SAVES_EACH)]

    def record(what: str, status: int) -> None:
        with lock:
            statuses[status] += 1
            if status >= 400:
                failures.append(f"{what}: HTTP {status}")

    def shopper(number: int) -> None:
        i = number
        while saving.is_set():
            query = QUERIES[i % len(QUERIES)]
            i += 1
            try:
                with urllib.request.urlopen(f"{base}/?q={urllib.parse.quote(query)}", timeout=60) as response:
                    record(f"search {query!r}", response.status)
            except urllib.error.HTTPError as exc:
                record(f"search {query!r}", exc.code)

    def merchandiser(number: int) -> None:
        session = Merchandiser(base)
        for sku in skus[number * SAVES_EACH:(number + 1) * SAVES_EACH]:
            status = session.post("/admin/catalog/product/add/", {
                "sku": sku, "title": f"Red striped mug {sku}", "description": "", "brand": "Acme",
                "category": "mugs", "price": "12.00", "currency": "USD", "attributes": "{}", "active": "on",
            }, form_url="/admin/catalog/product/add/")
            record(f"admin save {sku}", status)

    # given: shoppers searching all the time
    shoppers = [threading.Thread(target=shopper, args=(n,)) for n in range(SHOPPERS)]
    for thread in shoppers:
        thread.start()
    try:
        # when: merchandisers save products in the admin meanwhile
        merchandisers = [threading.Thread(target=merchandiser, args=(n,)) for n in range(MERCHANDISERS)]
        for thread in merchandisers:
            thread.start()
        for thread in merchandisers:
            thread.join(timeout=240)
    finally:
        saving.clear()
        for thread in shoppers:
            thread.join(timeout=120)

    # then: no request failed, the shoppers really were searching, and every save is in search
    assert not failures, (failures[:10], live_shop["log"].read_text()[-3000:])
    assert statuses[302] == len(skus) and statuses[200] >= SHOPPERS
    with sqlite3.connect(live_shop["db"], timeout=30) as conn:
        states = dict(conn.execute("SELECT sku, index_status FROM catalog_product WHERE sku LIKE 'LIVE-%'"))
        searches = conn.execute("SELECT count(*) FROM search_searchevent").fetchone()[0]
    assert states == {sku: "indexed" for sku in skus}
    assert searches == statuses[200] + 1  # every shopper's search was logged, and the start-up probe
