"""Imports a careless merchandiser or an attacker would send: nothing stored is lost, every line
is accounted for, one bad row never takes good rows (or their image files) with it (issue 13)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from decimal import Decimal
from pathlib import Path

import pytest

from catalog.models import Product
from catalog.services import catalog_import
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db(transaction=True)


def run(tmp_path: Path, name: str, content: bytes | str, images_dir: Path | None = None, **kw):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return catalog_import(source=path, images_dir=images_dir or tmp_path, **kw)


@pytest.fixture
def stored(django_capture_on_commit_callbacks):
    from catalog.services import product_create

    with django_capture_on_commit_callbacks(execute=True):
        return product_create(
            sku="S7-00003",
            title="Old title",
            description="Kept description",
            brand="Acme",
            category="mugs",
            price=Decimal("12.00"),
        )


def test_a_short_csv_row_never_blanks_what_is_stored(tmp_path, stored):
    report = run(tmp_path, "short.csv", "sku,title,price,description,brand,category\nS7-00003,Short row new title,10\n")
    assert report.failed == 1 and report.updated == 0
    assert "3 cells but the header has 6 columns" in str(report.errors[0])
    stored.refresh_from_db()
    assert (stored.title, stored.description, stored.brand, stored.category) == (
        "Old title",
        "Kept description",
        "Acme",
        "mugs",
    )


def test_a_jsonl_null_leaves_the_stored_value(tmp_path, stored):
    report = run(
        tmp_path,
        "nulls.jsonl",
        json.dumps({"sku": "S7-00003", "title": "New title", "brand": None, "description": None, "price": None}) + "\n",
    )
    assert report.updated == 1 and report.failed == 0
    stored.refresh_from_db()
    assert (stored.title, stored.brand, stored.description, stored.price) == (
        "New title",
        "Acme",
        "Kept description",
        Decimal("12.00"),
    )


def test_an_unterminated_quote_names_its_line_and_every_line_is_accounted_for(tmp_path):
    lines = (
        ["sku,title,price"]
        + [f"A{n},Product {n},1" for n in range(1, 4)]
        + ['A4,"Broken,1']
        + [f"A{n},Product {n},1" for n in range(5, 10)]
    )
    report = run(tmp_path, "quote.csv", "\n".join(lines) + "\n")
    assert report.created == 3
    assert [str(e) for e in report.errors] == [
        "line 5: a quote opened on this line is never closed, so lines 5-10 were read as one row; "
        "nothing from them was imported. Close the quote (or double a quote inside a quoted cell)."
    ]
    assert report.summary() == "10 lines: 1 header, 3 created, 0 updated, 0 unchanged, 6 not imported (1 error)"


def test_a_byte_that_is_not_utf8_fails_its_line_only(tmp_path):
    rows = [f"B{n},Product {n},1" for n in range(1, 601)]
    rows[560] = "B561,Caf\xe9 latin-1,1"
    content = ("sku,title,price\n" + "\n".join(rows) + "\n").encode("latin-1")
    report = run(tmp_path, "latin1.csv", content, chunk_size=500)
    assert report.created == 599 and report.failed == 1
    assert str(report.errors[0]).startswith("line 562: not UTF-8 text (byte 9 of the line")
    assert Product.objects.count() == 599


@pytest.mark.parametrize(
    "bad",
    [
        '{"sku": "C3", "title": "deep", "price": 1, "attributes": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"sku": "C3", "title": "nul image", "price": 1, "image": "red\\u0000.png"}',
        '{"sku": "X/../../tmp/evil", "title": "escape", "price": 1, "image": "red.png"}',
        '{"sku": "C3", "title": "nul attribute", "price": 1, "attributes": {"colour": "re\\u0000d"}}',
    ],
    ids=["nested", "nul-image", "sku-path", "nul-attribute"],
)
def test_one_bad_row_never_takes_its_chunk_with_it(tmp_path, bad, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    (tmp_path / "red.png").write_bytes(png_bytes("red"))
    good = [json.dumps({"sku": f"G{n}", "title": f"Good {n}", "price": 1, "image": "red.png"}) for n in range(4)]
    report = run(tmp_path, "mixed.jsonl", "\n".join(good[:2] + [bad] + good[2:]) + "\n", chunk_size=500)
    assert report.created == 4 and report.failed == 1 and report.errors[0].line == 3, report.errors
    assert set(Product.objects.values_list("sku", flat=True)) == {"G0", "G1", "G2", "G3"}
    assert not (Path("/tmp") / "evil").exists()


def test_rows_that_fail_to_save_leave_no_image_files(tmp_path, settings, monkeypatch):
    from catalog.models import Product as Model

    settings.MEDIA_ROOT = tmp_path / "media"
    (tmp_path / "red.png").write_bytes(png_bytes("red"))
    (tmp_path / "blue.png").write_bytes(png_bytes("blue"))
    real = Model.objects.bulk_create

    def failing(objs, *args, **kwargs):  # the database refuses the write (a lost connection, a constraint)
        if any(p.sku == "D2" for p in objs):
            from django.db import DataError

            raise DataError("refused")
        return real(objs, *args, **kwargs)

    monkeypatch.setattr(Model.objects, "bulk_create", failing)
    lines = [
        json.dumps({"sku": "D1", "title": "One", "price": 1, "image": "red.png"}),
        json.dumps({"sku": "D2", "title": "Two", "price": 1, "image": "blue.png"}),
    ]
    report = run(tmp_path, "two.jsonl", "\n".join(lines) + "\n")
    assert report.created == 1 and [e.sku for e in report.errors] == ["D2"]
    files = sorted(p.name for p in (tmp_path / "media").rglob("*") if p.is_file())
    assert files == [Product.objects.get(sku="D1").image.name.rsplit("/", 1)[-1]]


@pytest.fixture
def web_server():
    """A web server on this machine: an image at any path, and a path that trickles bytes."""
    import http.server
    import threading
    import time

    image = png_bytes("red")

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.startswith("/redirect?to="):  # a URL that sends the importer elsewhere
                self.send_response(302)
                self.send_header("Location", urllib.parse.unquote(self.path.split("=", 1)[1]))
                self.end_headers()
                return
            if self.path == "/slow.png":  # 100 bytes a second, for ever
                self.send_response(200)
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                try:
                    for _ in range(600):
                        self.wfile.write(b"x" * 10)
                        self.wfile.flush()
                        time.sleep(0.1)
                except OSError:
                    return
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(image)))
            self.end_headers()
            self.wfile.write(image)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_image_urls_may_not_reach_this_machine_or_the_shops_network(tmp_path, web_server, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    rows = [
        {"sku": "L1", "title": "Loopback", "price": 1, "image": f"{web_server}/red.png"},
        {"sku": "L2", "title": "Metadata", "price": 1, "image": "http://169.254.169.254/latest/meta-data/"},
        {"sku": "L3", "title": "Private", "price": 1, "image": "http://10.0.0.1:9/x.png"},
        {
            "sku": "L4",
            "title": "Mapped",
            "price": 1,
            "image": f"http://[::ffff:127.0.0.1]:{web_server.rsplit(':', 1)[1]}/red.png",
        },
    ]
    report = run(tmp_path, "urls.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    assert report.created == 0 and len(report.errors) == 4
    assert all("loopback, private or link-local address" in e.message for e in report.errors), report.errors
    settings.CATALOG_IMAGE_URL_ALLOW_PRIVATE = True  # a shop that serves its images from its own network
    assert run(tmp_path, "one.jsonl", json.dumps(rows[0]) + "\n").created == 1


def test_an_image_url_that_redirects_to_ftp_or_a_file_is_refused_before_anything_is_sent(
    tmp_path, web_server, settings
):
    import socket
    import threading

    # given an FTP-like listener on this machine that records what reaches it
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(3)
    reached: list[bytes] = []

    def serve():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.sendall(b"220 ready\r\n")
            reached.append(conn.recv(100))

    threading.Thread(target=serve, daemon=True).start()
    ftp = f"ftp://127.0.0.1:{listener.getsockname()[1]}/x.png"
    # when an import's image URL (allowed: a shop's own network) redirects to ftp:// or file://
    settings.CATALOG_IMAGE_URL_ALLOW_PRIVATE = True
    rows = [
        {"sku": "R1", "title": "To FTP", "price": 1, "image": f"{web_server}/redirect?to={urllib.parse.quote(ftp)}"},
        {"sku": "R2", "title": "To a file", "price": 1, "image": f"{web_server}/redirect?to=file:///etc/passwd"},
        {"sku": "R3", "title": "Direct FTP", "price": 1, "image": ftp},
    ]
    report = run(tmp_path, "redirects.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    listener.close()
    # then each row fails with the reason, and nothing reached the listener
    assert report.created == 0 and [e.sku for e in report.errors] == ["R1", "R2", "R3"]
    assert "redirects to ftp://" in report.errors[0].message and "http and https only" in report.errors[0].message
    assert "redirects to file:///etc/passwd" in report.errors[1].message
    assert not reached


def test_a_slow_image_url_has_a_total_deadline_and_the_import_a_budget(tmp_path, web_server, settings):
    import time

    settings.CATALOG_IMAGE_URL_ALLOW_PRIVATE = True
    settings.CATALOG_IMAGE_FETCH_SECONDS = 1.5
    settings.CATALOG_IMPORT_FETCH_BUDGET_SECONDS = 2.5
    rows = [{"sku": f"T{n}", "title": f"Slow {n}", "price": 1, "image": f"{web_server}/slow.png"} for n in range(4)]
    started = time.monotonic()
    report = run(tmp_path, "slow.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    assert time.monotonic() - started < 6  # not 4 x 100 s
    messages = [e.message for e in report.errors]
    assert "did not arrive within 1.5 s" in messages[0]
    assert "spent its 2.5 s for downloading images" in messages[-1]


def test_a_quote_left_open_on_the_last_line_names_that_line(tmp_path):
    report = run(tmp_path, "last.csv", 'sku,title,price\nA1,Fine,1\nA2,"Broken,1\n')
    assert report.created == 1
    assert [str(e) for e in report.errors] == [
        "line 3: a quote opened on this line is never closed, so nothing from it was imported. "
        "Close the quote (or double a quote inside a quoted cell)."
    ]


RUN_JOB = r"""
import sys
import django
django.setup()
from django.core.files.base import ContentFile
from catalog.models import ImportJob
from catalog.services import import_job_run
rows = "".join(f"K-{n},Mug number {n},{n % 50 + 1}\n" for n in range(2000))
job = ImportJob(file_name="big.csv", rows_total=2000)
job.upload.save("big.csv", ContentFile(("sku,title,price\n" + rows).encode()), save=False)
job.save()
print(job.pk, flush=True)
import_job_run(job_id=job.pk)
"""

RESUME = r"""
import threading, time
import django
django.setup()
from catalog.services import import_jobs_resume_stalled
print(import_jobs_resume_stalled(), flush=True)
for thread in threading.enumerate():
    if thread.name.startswith("import-job-"):
        thread.join(timeout=240)
"""


@pytest.mark.live
def test_an_import_whose_runner_is_killed_goes_on_from_its_last_chunk(tmp_path, stack_database, tiny_model_dir):
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "QDRANT_URL")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "shop_search.settings",
            "DATABASE_URL": stack_database.url,
            "SHOP_SEARCH_VAR_DIR": str(tmp_path / "var"),
            "QDRANT_PATH": str(tmp_path / "var" / "qdrant"),
            "SEARCH_EMBEDDING_MODEL": str(tiny_model_dir),
        }
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=root, env=env, check=True)
    runner = subprocess.Popen([sys.executable, "-c", RUN_JOB], cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    job_id = int(runner.stdout.readline())

    def job() -> tuple:
        return stack_database.rows(f"SELECT status, rows_done, report FROM catalog_importjob WHERE id = {job_id}")[0]

    deadline = time.monotonic() + 120
    while job()[1] < 400 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(runner.pid, signal.SIGKILL)  # the runner dies mid-import
    runner.wait()
    status, done_before, _ = job()
    assert status == "running" and 400 <= done_before < 2000

    # its runner was a process of this host: the sweep sees it gone at once (not only after
    # CATALOG_IMPORT_STALL_SECONDS of silence) and resumes it
    resumed = subprocess.run(
        [sys.executable, "-c", RESUME], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.stdout.split()[0] == "1", resumed.stderr[-2000:]
    status, rows_done, report = job()
    report = json.loads(report) if isinstance(report, str) else report
    assert status == "done" and rows_done >= 2000
    assert stack_database.rows("SELECT count(*), count(DISTINCT sku) FROM catalog_product")[0] == (2000, 2000)
    # the checkpoint is saved with its chunk: the rows written before the kill are not counted
    # again as "unchanged" (a shopper's import of 3,000 new rows read "2800 created, 200 unchanged")
    assert (report["created"], report["unchanged"]) == (2000, 0), report["summary"]
    assert report["lines"] == 2001 and report["failed"] == 0
    assert any(w.startswith(f"This import was interrupted after {done_before} rows") for w in report["warnings"])
    assert f"Import job {job_id} was interrupted" in resumed.stderr


@pytest.mark.parametrize(
    "name, content, summary",
    [
        (
            "blank.jsonl",
            '{"sku": "B1", "title": "Mug", "price": 1}\n\n{"sku": "B2", "title": "Cup", "price": 2}\n',
            "3 lines: 1 blank, 2 created",
        ),
        ("blank.csv", "sku,title,price\nB1,Mug,1\n\n   \nB2,,2\n", "5 lines: 1 header, 2 blank, 1 created"),
    ],
)
def test_the_summary_names_the_header_and_blank_lines_it_skipped(tmp_path, name, content, summary):
    assert run(tmp_path, name, content).summary().startswith(summary)
