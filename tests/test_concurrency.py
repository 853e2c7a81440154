"""The embedded default under a small shop's load: a live server on SQLite, shoppers searching
and clicking (each writes the search log) while merchandisers save and import products in the
admin."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import socket
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
IMPORTED = 20
QUERIES = ["red mug", "blue vase", "green wool scarf", "striped socks", "lamp", "water bottle"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(params=["local", "edge"])
def live_shop(request, tmp_path, tiny_model_dir, stack_database):
    """A migrated embedded-default instance with a small catalog and a staff user, served by
    `manage.py runserver` (threaded) in its own process, on each embedded vector engine (and
    PostgreSQL's database when the suite runs on it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "QDRANT_URL")}
    env.update(
        {
            "DATABASE_URL": stack_database.url,
            "DJANGO_SETTINGS_MODULE": "shop_search.settings",
            "SHOP_SEARCH_VAR_DIR": str(tmp_path / "var"),
            "QDRANT_PATH": str(tmp_path / "var" / "qdrant"),
            "SEARCH_EMBEDDING_MODEL": str(tiny_model_dir),
            "SEARCH_DEVICE": "cpu",
            "LOG_LEVEL": "WARNING",
            "DJANGO_SUPERUSER_PASSWORD": "pw-staff-1",
            "SEARCH_VECTOR_ENGINE": request.param,
            # sixteen shoppers from one address: real ones come from addresses of their own
            "SEARCH_RATE_LIMITS": "",
        }
    )
    manage = [sys.executable, "manage.py"]

    def run(*args: str) -> None:
        subprocess.run(manage + list(args), cwd=ROOT, env=env, check=True, timeout=300, stdout=subprocess.DEVNULL)

    run("migrate", "-v0")
    run("createsuperuser", "--noinput", "--username", "staff", "--email", "staff@example.com")
    run("generate_catalog", str(tmp_path / "sample"), "--products", "40", "--seed", "3", "--queries", "0", "-v0")
    run("import_catalog", str(tmp_path / "sample" / "catalog.jsonl"), "-v0")
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        manage + ["runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "/api/search?q=mug", timeout=5).read()
            break
        except OSError:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(0.3)
    yield {"base": base, "db": stack_database, "log": tmp_path / "server.log", "env": env}
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
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), NoRedirect()
        )
        status = self.post(
            "/admin/login/?next=/admin/",
            {"username": "staff", "password": "pw-staff-1", "next": "/admin/"},
            form_url="/admin/login/",
        )
        assert status == 302, f"admin login answered {status}"

    def post(self, url: str, data: dict, *, form_url: str, files: dict[str, tuple[str, bytes]] | None = None) -> int:
        """Submit a form as the browser would: its CSRF token from the form page, multipart when
        it carries files. Returns the HTTP status (302: saved and redirected)."""
        page = self.opener.open(self.base + form_url, timeout=60).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        fields = {**data, "csrfmiddlewaretoken": token}
        headers = {"Referer": self.base + form_url}
        if files:
            boundary = "----shop-search-test-boundary"
            parts = [
                f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                for k, v in fields.items()
            ]
            parts += [
                f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n".encode()
                + content
                + b"\r\n"
                for k, (name, content) in files.items()
            ]
            body = b"".join(parts) + f"--{boundary}--\r\n".encode()
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        else:
            body = urllib.parse.urlencode(fields).encode()
        request = urllib.request.Request(self.base + url, data=body, headers=headers)
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code


def test_admin_saves_imports_searches_and_clicks_all_succeed_under_concurrent_shoppers(live_shop):
    base = live_shop["base"]
    statuses: Counter = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    saving = threading.Event()
    saving.set()
    skus = [f"LIVE-{m}-{i}" for m in range(MERCHANDISERS) for i in range(SAVES_EACH)]
    imported = [f"LIVE-IMPORT-{i}" for i in range(IMPORTED)]

    def record(what: str, status: int) -> None:
        with lock:
            statuses[status] += 1
            if status >= 400:
                failures.append(f"{what}: HTTP {status}")

    def call(what: str, url: str, data: bytes | None = None, session: str = "") -> bytes:
        headers = {"Content-Type": "application/json", **({"X-Session-Id": session} if session else {})}
        request = urllib.request.Request(url, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                record(what, response.status)
                return response.read()
        except urllib.error.HTTPError as exc:
            record(what, exc.code)
            return b""

    def shopper(number: int) -> None:
        """Even shoppers use the storefront; odd ones the JSON API, and click the second result."""
        i = number
        while saving.is_set():
            query = QUERIES[i % len(QUERIES)]
            i += 1
            if number % 2 == 0:
                call(f"search {query!r}", f"{base}/?q={urllib.parse.quote(query)}")
                continue
            found = json.loads(
                call(f"api search {query!r}", f"{base}/api/search?q={urllib.parse.quote(query)}", session=f"s{number}")
                or b"{}"
            )
            if len(found.get("results", [])) > 1:
                call(
                    f"click {query!r}",
                    f"{base}/api/clicks",
                    json.dumps({"search_id": found["search_id"], "product_id": found["results"][1]["id"]}).encode(),
                    session=f"s{number}",
                )

    def merchandiser(number: int) -> None:
        session = Merchandiser(base)
        for sku in skus[number * SAVES_EACH : (number + 1) * SAVES_EACH]:
            status = session.post(
                "/admin/catalog/product/add/",
                {
                    "sku": sku,
                    "title": f"Red striped mug {sku}",
                    "description": "",
                    "brand": "Acme",
                    "category": "mugs",
                    "price": "12.00",
                    "currency": "USD",
                    "attributes": "{}",
                    "active": "on",
                },
                form_url="/admin/catalog/product/add/",
            )
            record(f"admin save {sku}", status)
        if number == 0:  # and one bulk import through the admin's import page
            rows = "".join(f"{sku},Blue glass vase {sku},30.00,vases\n" for sku in imported)
            status = session.post(
                "/admin/catalog/product/import/",
                {},
                form_url="/admin/catalog/product/import/",
                files={"file": ("catalog.csv", f"sku,title,price,category\n{rows}".encode())},
            )
            record("admin import", status)

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

    # then: no request failed, the shoppers really were searching and clicking, every search
    # and click is in the log, and every saved or imported product is in search
    assert not failures, (failures[:10], live_shop["log"].read_text()[-3000:])
    assert statuses[302] == len(skus) + 1  # the saves and the import, each redirected on success
    assert statuses[201] >= SHOPPERS // 2 and statuses[200] >= SHOPPERS
    # the server answers before its log writer has written the search, and the admin's import
    # runs in the background after its page answered: allow them a moment
    deadline = time.monotonic() + 60
    while True:
        db = live_shop["db"]
        states = dict(db.rows("SELECT sku, index_status FROM catalog_product WHERE sku LIKE 'LIVE-%'"))
        searches = db.rows("SELECT count(*) FROM search_searchevent")[0][0]
        clicks = db.rows("SELECT count(*) FROM search_click")[0][0]
        jobs = db.rows("SELECT status, error, report FROM catalog_importjob")
        indexed = states == {sku: "indexed" for sku in skus + imported}
        # the job's last chunk (its rows, already indexed) commits before the job says done
        finished = [status for status, _, _ in jobs] == ["done"]
        if searches >= statuses[200] + 1 and indexed and finished or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [status for status, _, _ in jobs] == ["done"], jobs
    assert states == {sku: "indexed" for sku in skus + imported}
    assert searches == statuses[200] + 1  # every shopper's search was logged, and the start-up probe
    assert clicks == statuses[201]


def test_changes_from_a_terminal_reach_search_while_the_server_runs(live_shop, tmp_path):
    """The embedded store can be opened by one process at a time, and the running server has it:
    a terminal import or a bulk update must still reach search by itself, and say so."""
    env = live_shop["env"]

    def states(where: str) -> dict:
        return dict(live_shop["db"].rows(f"SELECT sku, index_status FROM catalog_product WHERE {where}"))

    # when: a merchandiser imports from a terminal while shoppers are served
    (tmp_path / "more.csv").write_text(
        "sku,title,price,category\n" + "".join(f"TERM-{i},Green glass vase {i},20.00,vases\n" for i in range(12)),
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "import_catalog", str(tmp_path / "more.csv")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # then: no traceback, and it says what happens next
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stderr[-2000:]
    assert "running server" in done.stdout + done.stderr, done.stdout + done.stderr

    # and when: a data fix updates rows in bulk and flags them, as the README says
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from catalog.models import Product;"
            "Product.objects.filter(sku__startswith='S3-').update(price=1);"
            "Product.objects.filter(sku__startswith='S3-').mark_pending()",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
        capture_output=True,
    )

    # and when: someone re-indexes everything from a terminal
    reindex = subprocess.run(
        [sys.executable, "manage.py", "index_products", "--all", "--force"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert reindex.returncode == 0 and "Traceback" not in reindex.stdout + reindex.stderr, reindex.stderr[-2000:]
    assert "Handed" in reindex.stdout and "running server" in reindex.stdout

    # then: within seconds, with no manual step, all of it is in search
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if set(states("1 = 1").values()) == {"indexed"}:
            break
        time.sleep(0.5)
    assert set(states("1 = 1").values()) == {"indexed"}  # the imported, the updated, and the re-indexed
    found = json.loads(
        urllib.request.urlopen(f"{live_shop['base']}/api/search?q=green+glass+vase&page_size=100", timeout=60).read()
    )
    assert {r["sku"] for r in found["results"]} >= {f"TERM-{i}" for i in range(12)}
    for sku in ("S3-00001", "s3 00040"):  # a SKU finds its product first, at its new price
        first = json.loads(
            urllib.request.urlopen(f"{live_shop['base']}/api/search?q={urllib.parse.quote(sku)}", timeout=60).read()
        )["results"][0]
        assert first["sku"].lower().replace("-", " ") == sku.lower().replace("-", " ") and first["price"] == 1.0
