"""Bulk import: bad rows reported by line, good rows kept, batches not per-row tasks."""

from __future__ import annotations

import csv
import http.server
import json
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from celery.signals import task_prerun

from catalog.models import IndexStatus, Product
from catalog.services import catalog_import
from catalog.services.importing import ImportFileError
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db

HEADER = ["sku", "title", "description", "brand", "category", "price", "currency", "image", "attributes"]


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in HEADER})
    return path


def row(sku: str, **kw) -> dict:
    return {
        "sku": sku,
        "title": kw.pop("title", f"Product {sku}"),
        "price": kw.pop("price", "9.99"),
        "currency": "USD",
        **kw,
    }


@pytest.fixture
def images_dir(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "red.png").write_bytes(png_bytes("red"))
    (folder / "blue.png").write_bytes(png_bytes("blue"))
    (folder / "broken.png").write_bytes(png_bytes("green")[:60])
    (folder / "notes.txt").write_text("not an image")
    return folder


def run_import(path: Path, images_dir: Path | None, capture, **kw):
    with capture(execute=True):
        return catalog_import(source=path, images_dir=images_dir, **kw)


def test_bad_rows_are_reported_by_line_and_good_rows_kept(tmp_path, images_dir, django_capture_on_commit_callbacks):
    rows = [
        row("A1", title="Red mug", image="red.png", attributes='{"colour": "red"}'),  # line 2
        row("A2", title=""),  # line 3
        row("A3", price="cheap"),  # line 4
        row("A4", image="broken.png"),  # line 5
        row("A5", image="../../etc/passwd"),  # line 6
        row("A6", attributes="[1, 2]"),  # line 7
        row("bad sku!"),  # line 8
        row("A1", title="Duplicate"),  # line 9
        row("A9", image="notes.txt"),  # line 10
        row("A10", title="Blue vase", image="blue.png", description="Tall."),  # line 11
        row("A11", price="-3"),  # line 12
        row("A12", image="missing.png"),  # line 13
    ]
    report = run_import(write_csv(tmp_path / "c.csv", rows), images_dir, django_capture_on_commit_callbacks)

    errors = {e.line: e.message for e in report.errors}
    assert (report.created, report.failed) == (2, 10)
    assert "title" in errors[3]
    assert "not a number" in errors[4]
    assert "corrupt" in errors[5] or "readable" in errors[5]
    assert "outside the images directory" in errors[6]
    assert "JSON object" in errors[7]
    assert "sku" in errors[8]
    assert "line 2" in errors[9]
    assert "not a readable image" in errors[10]
    assert "greater than or equal to 0" in errors[12]
    assert "no file 'missing.png'" in errors[13]
    mug = Product.objects.get(sku="A1")
    assert mug.attributes == {"colour": "red"} and mug.image
    assert mug.index_status == IndexStatus.INDEXED
    assert set(Product.objects.values_list("sku", flat=True)) == {"A1", "A10"}


def test_existing_skus_are_updated_and_unchanged_rows_left_alone(
    tmp_path, images_dir, django_capture_on_commit_callbacks
):
    path = write_csv(tmp_path / "c.csv", [row("B1", title="Red mug", image="red.png"), row("B2")])
    run_import(path, images_dir, django_capture_on_commit_callbacks)
    first_image = Product.objects.get(sku="B1").image.name

    path = write_csv(
        tmp_path / "c.csv", [row("B1", title="Red mug", image="red.png"), row("B2", price="12.00"), row("B3")]
    )
    report = run_import(path, images_dir, django_capture_on_commit_callbacks)

    assert (report.created, report.updated, report.unchanged, report.failed) == (1, 1, 1, 0)
    assert Product.objects.get(sku="B2").price == Decimal("12.00")
    assert Product.objects.get(sku="B1").image.name == first_image  # same bytes: not copied again


def test_columns_left_out_keep_their_values(tmp_path, images_dir, django_capture_on_commit_callbacks):
    run_import(
        write_csv(
            tmp_path / "c.csv", [row("K1", title="Red mug", image="red.png", brand="Acme", description="Glazed.")]
        ),
        images_dir,
        django_capture_on_commit_callbacks,
    )
    (tmp_path / "price.jsonl").write_text(json.dumps({"sku": "K1", "price": "7.50"}) + "\n")

    report = run_import(tmp_path / "price.jsonl", images_dir, django_capture_on_commit_callbacks)

    product = Product.objects.get(sku="K1")
    assert report.updated == 1
    assert (product.price, product.brand, product.description) == (Decimal("7.50"), "Acme", "Glazed.")
    assert product.image


def test_jsonl_reports_broken_lines(tmp_path, images_dir, django_capture_on_commit_callbacks):
    lines = [
        json.dumps(row("J1", image="red.png", attributes={"size": "L"})),
        "{not json",
        "",
        json.dumps(["a", "list"]),
        json.dumps(row("J2", title="x" * 301)),
    ]
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    report = run_import(path, images_dir, django_capture_on_commit_callbacks)

    assert report.created == 1
    assert [e.line for e in report.errors] == [2, 4, 5]
    assert "not valid JSON" in report.errors[0].message
    assert "at most 300 characters" in report.errors[2].message


def test_hostile_and_enormous_text_is_refused_or_kept_intact(tmp_path, django_capture_on_commit_callbacks):
    hostile = '<script>alert("x")</script> \'; DROP TABLE catalog_product; -- ☃'
    rows = [
        row("H1", title=hostile, description="🙂 " * 100),
        row("H2", title="Nul\x00byte"),
        row("H3", description="y" * 20_001),
    ]
    report = run_import(write_csv(tmp_path / "h.csv", rows), None, django_capture_on_commit_callbacks)

    assert report.created == 1
    assert Product.objects.get(sku="H1").title == hostile
    errors = {e.line: e.message for e in report.errors}
    assert "Null characters are not allowed" in errors[3]
    assert "at most 20000 characters" in errors[4]


def test_decompression_bombs_are_refused(settings, tmp_path, images_dir, django_capture_on_commit_callbacks):
    settings.CATALOG_MAX_IMAGE_PIXELS = 100 * 100
    (images_dir / "huge.png").write_bytes(png_bytes("red", size=(400, 400)))

    report = run_import(
        write_csv(tmp_path / "c.csv", [row("Z1", image="huge.png")]), images_dir, django_capture_on_commit_callbacks
    )

    assert report.failed == 1 and "pixels is over the limit" in report.errors[0].message


def test_file_level_problems_raise_a_clear_error(tmp_path):
    (tmp_path / "c.csv").write_text("name,cost\nmug,3\n")
    with pytest.raises(ImportFileError, match="lacks the column"):
        catalog_import(source=tmp_path / "c.csv")
    (tmp_path / "c.txt").write_text("")
    with pytest.raises(ImportFileError, match=".csv or .jsonl"):
        catalog_import(source=tmp_path / "c.txt")
    # a line that is not UTF-8 is a row error with its line, not the end of the import
    (tmp_path / "latin.csv").write_bytes("sku,title,price\nL1,Caf\xe9,3\n".encode("latin-1"))
    report = catalog_import(source=tmp_path / "latin.csv")
    assert [str(e) for e in report.errors] == [
        "line 2: not UTF-8 text (byte 7 of the line is 0xe9); save the file as UTF-8."
    ]


def test_a_utf16_csv_from_a_spreadsheet_imports(tmp_path):
    text = 'sku,title,price\r\nU1,Tasse à café,3\r\nU2,"Mug, blue",4\r\n'
    for encoding in ("utf-16", "utf-16-be"):
        raw = text.encode(encoding)
        if encoding == "utf-16-be":
            raw = b"\xfe\xff" + raw
        (tmp_path / "u.csv").write_bytes(raw)
        report = catalog_import(source=tmp_path / "u.csv")
        assert report.failed == 0 and report.lines == 3, report.errors
    assert sorted(Product.objects.values_list("title", flat=True)) == ["Mug, blue", "Tasse à café"]


def test_a_column_named_twice_in_the_header_is_refused(tmp_path):
    (tmp_path / "d.csv").write_text("sku,title,price,brand,price\nD1,Mug,3,Acme,4\n")
    with pytest.raises(ImportFileError, match=r"names the column 'price' more than once \(columns 3 and 5\)"):
        catalog_import(source=tmp_path / "d.csv")
    assert not Product.objects.exists()


def test_images_can_come_from_http_urls(tmp_path, images_dir, django_capture_on_commit_callbacks, settings):
    settings.CATALOG_IMAGE_URL_ALLOW_PRIVATE = True  # the test's server is on this machine

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(images_dir), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        rows = [
            row("U1", image=f"{base}/red.png"),
            row("U2", image=f"{base}/nope.png"),
            row("U3", image="file:///etc/hostname"),
        ]
        report = run_import(write_csv(tmp_path / "u.csv", rows), None, django_capture_on_commit_callbacks)
    finally:
        server.shutdown()

    assert report.created == 1 and Product.objects.get(sku="U1").image
    errors = {e.line: e.message for e in report.errors}
    assert "HTTP 404" in errors[3]
    assert "only http(s) URLs" in errors[4]


def test_large_imports_send_batches_not_one_task_per_row(settings, tmp_path, django_capture_on_commit_callbacks):
    settings.SEARCH_INDEX_BATCH_SIZE = 50
    started: list[list[int]] = []

    def count(sender=None, args=None, **kwargs):
        if sender.name == "search.tasks.embed_products_task":
            started.append(args[0])

    task_prerun.connect(count)
    try:
        rows = [row(f"N{i}", title=f"Item {i}") for i in range(230)]
        report = run_import(
            write_csv(tmp_path / "n.csv", rows), None, django_capture_on_commit_callbacks, chunk_size=100
        )
    finally:
        task_prerun.disconnect(count)

    assert report.created == 230
    # chunks of 100, 100, 30 rows, each split into batches of at most 50 ids
    assert [len(batch) for batch in started] == [50, 50, 50, 50, 30]
    assert Product.objects.filter(index_status=IndexStatus.INDEXED).count() == 230
