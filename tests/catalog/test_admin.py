"""Merchandiser screens: status visible and filterable, re-embed, upload and import."""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalog.models import IndexStatus, Product
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(admin_client):
    return admin_client


def test_changelist_shows_index_status_and_filters_by_it(staff, make_product):
    make_product("Red ceramic mug")
    Product.objects.create(
        sku="F1", title="Failing", price=1, index_status=IndexStatus.FAILED, index_error="image: corrupt"
    )
    Product.objects.filter(sku="F1").update(index_status=IndexStatus.FAILED, index_error="image: corrupt")

    page = staff.get(reverse("admin:catalog_product_changelist")).content.decode()
    failed = staff.get(reverse("admin:catalog_product_changelist") + "?index_status__exact=failed").content.decode()

    assert "Indexed" in page and "Failed" in page
    assert "Failing" in failed and "Red ceramic mug" not in failed
    assert 'title="image: corrupt"' in failed


def test_adding_a_product_with_an_image_indexes_it(staff, index, django_capture_on_commit_callbacks):
    upload = SimpleUploadedFile("mug.png", png_bytes("red"), content_type="image/png")
    data = {
        "sku": "ADM-1",
        "title": "Red mug",
        "price": "5.00",
        "currency": "USD",
        "image": upload,
        "attributes": "{}",
        "active": "on",
        "description": "",
        "brand": "",
        "category": "mugs",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(reverse("admin:catalog_product_add"), data)

    assert response.status_code == 302, response.content.decode()[:2000]
    product = Product.objects.get(sku="ADM-1")
    assert product.index_status == IndexStatus.INDEXED
    assert index.existing_ids([product.pk]) == {product.pk}
    # stored like every other way in: named by its content, not by the uploader's file name
    assert product.image.name == f"products/ADM-1/{hashlib.sha256(png_bytes('red')).hexdigest()[:16]}.png"


def form_data(product: Product, **changes) -> dict:
    data = {
        "sku": product.sku,
        "title": product.title,
        "description": product.description,
        "brand": product.brand,
        "category": product.category,
        "price": str(product.price),
        "currency": product.currency,
        "attributes": "{}",
        "active": "on",
    }
    return {**data, **changes}


def test_editing_in_the_admin_replaces_and_removes_the_image_in_search(
    staff, make_product, index, django_capture_on_commit_callbacks
):
    # given: a product with a red picture, indexed with an image vector
    product = make_product("Red ceramic mug")
    url = reverse("admin:catalog_product_change", args=[product.pk])
    first = index.retrieve([product.pk])[product.pk].vector["image"]

    # when: the merchandiser uploads a blue picture
    upload = SimpleUploadedFile("new.png", png_bytes("blue"), content_type="image/png")
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(url, form_data(product, image=upload))

    # then: it is stored under its content name and search sees the new picture
    assert response.status_code == 302, response.content.decode()[:2000]
    product.refresh_from_db()
    assert product.image.name.endswith(f"{hashlib.sha256(png_bytes('blue')).hexdigest()[:16]}.png")
    assert product.index_status == IndexStatus.INDEXED
    assert index.retrieve([product.pk])[product.pk].vector["image"] != first

    # when: the merchandiser clears the picture
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(url, form_data(product, **{"image-clear": "on"}))

    # then: the product is text-only in search
    assert response.status_code == 302, response.content.decode()[:2000]
    product.refresh_from_db()
    assert not product.image and product.index_status == IndexStatus.INDEXED
    assert set(index.retrieve([product.pk])[product.pk].vector) == {"text", "avg"}


def test_deleting_in_the_admin_removes_the_products_from_search(
    staff, make_product, index, django_capture_on_commit_callbacks
):
    one, two, kept = make_product("Red mug"), make_product("Blue mug"), make_product("Green mug")

    with django_capture_on_commit_callbacks(execute=True):
        staff.post(reverse("admin:catalog_product_delete", args=[one.pk]), {"post": "yes"})
        staff.post(
            reverse("admin:catalog_product_changelist"),
            {"action": "delete_selected", "_selected_action": [two.pk], "post": "yes"},
        )

    assert list(Product.objects.values_list("sku", flat=True)) == [kept.sku]
    assert index.existing_ids([one.pk, two.pk, kept.pk]) == {kept.pk}


def test_a_bulk_delete_in_the_admin_is_one_indexing_batch_not_one_per_product(
    staff, make_product, index, django_capture_on_commit_callbacks
):
    from catalog.signals import products_changed

    products = [make_product(f"Mug {n}") for n in range(5)]
    announced: list[list[int]] = []

    def heard(sender, product_ids, **kwargs):
        announced.append(list(product_ids))

    products_changed.connect(heard, dispatch_uid="test.heard")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            staff.post(
                reverse("admin:catalog_product_changelist"),
                {"action": "delete_selected", "_selected_action": [p.pk for p in products], "post": "yes"},
            )
    finally:
        products_changed.disconnect(dispatch_uid="test.heard")

    assert announced == [sorted(p.pk for p in products)]  # one announcement: one task per batch
    assert not Product.objects.exists() and not index.existing_ids([p.pk for p in products])


def test_a_corrupt_upload_is_refused_with_a_message(staff):
    upload = SimpleUploadedFile("mug.png", png_bytes("red")[:50], content_type="image/png")
    data = {
        "sku": "ADM-2",
        "title": "Red mug",
        "price": "5.00",
        "currency": "USD",
        "image": upload,
        "attributes": "{}",
        "active": "on",
    }
    response = staff.post(reverse("admin:catalog_product_add"), data)

    assert response.status_code == 200
    assert not Product.objects.filter(sku="ADM-2").exists()
    assert "image" in response.content.decode().lower()


def test_reembed_action_forces_a_new_embedding(staff, make_product, django_capture_on_commit_callbacks):
    product = make_product("Red ceramic mug")
    before = Product.objects.get(pk=product.pk).indexed_at

    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(
            reverse("admin:catalog_product_changelist"),
            {"action": "reembed_selected", "_selected_action": [product.pk]},
            follow=True,
        )

    product.refresh_from_db()
    assert "queued for re-embedding" in response.content.decode()
    assert product.index_status == IndexStatus.INDEXED and product.indexed_at > before


@pytest.mark.django_db(transaction=True)  # the import runs in a thread, on its own connection
def test_an_import_runs_in_the_background_and_its_page_follows_it(staff):
    import time

    csv_text = "sku,title,price,image\nZ1,Red mug,4.00,pics/red.png\nZ2,,4.00,\nZ3,Blue mug,oops,\n"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pics/red.png", png_bytes("red"))
    response = staff.post(
        reverse("admin:catalog_product_import"),
        {
            "file": SimpleUploadedFile("catalog.csv", csv_text.encode()),
            "images": SimpleUploadedFile("images.zip", archive.getvalue()),
        },
    )
    # the request only keeps the upload: it answers at once with the job's page
    assert response.status_code == 302 and "/import/" in response["Location"]
    job_page = response["Location"]
    body = staff.get(job_page).content.decode()
    deadline = time.monotonic() + 60
    while "Result:" not in body and time.monotonic() < deadline:
        assert 'http-equiv="refresh"' in body and "rows" in body  # it follows itself meanwhile
        time.sleep(0.2)
        body = staff.get(job_page).content.decode()
    assert "4 lines: 1 header, 1 created, 0 updated, 0 unchanged, 2 not imported (2 errors)" in body
    assert "title: this column is required" in body and "not a number" in body
    assert 'http-equiv="refresh"' not in body
    product = Product.objects.get(sku="Z1")
    assert product.image
    while Product.objects.get(sku="Z1").index_status != IndexStatus.INDEXED and time.monotonic() < deadline:
        time.sleep(0.2)
    assert Product.objects.get(sku="Z1").index_status == IndexStatus.INDEXED
    from catalog.models import ImportJob

    job = ImportJob.objects.get()
    assert not job.upload and not job.images  # the uploads go once read; the report stays
    listing = staff.get(reverse("admin:catalog_product_import")).content.decode()
    assert "catalog.csv" in listing and "Done" in listing


@pytest.mark.parametrize(
    "name, text, rows",
    [
        ("c.jsonl", "".join(f'{{"sku": "J{n}", "title": "Mug {n}"}}\n' for n in range(2000)), 2000),
        ("c.jsonl", '{"sku": "J1", "title": "Mug"}\n{"sku": "J2", "title": "Mug"}', 2),  # no last line break
        ("c.csv", "sku,title\nC1,Mug\nC2,Mug\n", 2),
        ("c.csv", "sku,title\nC1,Mug\nC2,Mug", 2),
    ],
)
def test_an_imports_page_counts_the_rows_of_its_file(name, text, rows):
    from catalog.services import import_job_start

    # a JSONL file of 2,000 lines was "about 1999 rows": a CSV's header was taken off it too
    job = import_job_start(upload=SimpleUploadedFile(name, text.encode()))
    assert job.rows_total == rows


def test_import_page_is_for_staff_only(client):
    response = client.get(reverse("admin:catalog_product_import"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_a_viewer_cannot_run_the_re_embed_action(client, make_product):
    from django.contrib.auth.models import Permission, User

    product = make_product("Red ceramic mug")
    viewer = User.objects.create_user("viewer", password="pw-viewer-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_product"))
    client.force_login(viewer)
    page = client.get(reverse("admin:catalog_product_changelist")).content.decode()
    assert "Red ceramic mug" in page and "reembed_selected" not in page  # not offered
    client.post(
        reverse("admin:catalog_product_changelist"), {"action": "reembed_selected", "_selected_action": [product.pk]}
    )
    product.refresh_from_db()
    assert product.index_status == IndexStatus.INDEXED  # nothing queued


@pytest.mark.django_db(transaction=True)
def test_an_import_whose_server_stopped_can_be_run_again(staff, settings):
    import time
    from datetime import timedelta

    from django.core.files.base import ContentFile
    from django.utils import timezone

    from catalog.models import ImportJob

    # given: an import that was running when its server stopped, half-way
    job = ImportJob(
        file_name="c.csv",
        rows_total=2,
        rows_done=1,
        status=ImportJob.Status.RUNNING,
        beat_at=timezone.now() - timedelta(hours=1),
    )
    job.upload.save("c.csv", ContentFile(b"sku,title,price\nR1,Red mug,3\nR2,Blue mug,4\n"), save=False)
    job.save()
    Product.objects.create(sku="R1", title="Red mug", price=3)  # the row it wrote before it stopped
    page = reverse("admin:catalog_product_import_job", args=[job.pk])
    body = staff.get(page).content.decode()
    assert (
        "This import was interrupted after 1 of about 2 rows" in body
        and "by itself within a minute" in body
        and 'http-equiv="refresh"' in body  # it goes on by itself: the page follows it
    )
    # a second delivery of a live import would do nothing; this one is stalled: run it again
    staff.post(page)
    deadline = time.monotonic() + 60
    while "Result:" not in body and time.monotonic() < deadline:
        time.sleep(0.2)
        body = staff.get(page).content.decode()
    assert "3 lines: 1 header, 1 created, 0 updated, 1 unchanged, 0 not imported (0 errors)" in body
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["R1", "R2"]


def test_a_second_delivery_of_a_running_import_does_nothing():
    from django.utils import timezone

    from catalog.models import ImportJob
    from catalog.services import import_job_run

    job = ImportJob.objects.create(
        file_name="c.csv", rows_total=9, rows_done=4, status=ImportJob.Status.RUNNING, beat_at=timezone.now()
    )
    again = import_job_run(job_id=job.pk)
    assert (again.status, again.rows_done) == (ImportJob.Status.RUNNING, 4) and not Product.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_import_queued_when_its_server_stopped_can_be_run_too(staff):
    import time
    from datetime import timedelta

    from django.core.files.base import ContentFile
    from django.utils import timezone

    from catalog.models import ImportJob

    job = ImportJob(file_name="q.csv", rows_total=1)
    job.upload.save("q.csv", ContentFile(b"sku,title,price\nQ1,Red mug,3\n"), save=False)
    job.save()
    ImportJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(hours=1))
    page = reverse("admin:catalog_product_import_job", args=[job.pk])
    assert "This import was interrupted after 0 of about 1 rows" in staff.get(page).content.decode()
    staff.post(page)
    deadline = time.monotonic() + 60
    while not Product.objects.filter(sku="Q1").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert Product.objects.filter(sku="Q1").exists()


def test_attributes_read_and_typed_as_lines_and_json_where_lines_would_change_them(staff):
    data = {"sku": "ATT-1", "title": "Tee", "price": "5.00", "currency": "USD", "active": "on"}
    data |= {"description": "", "brand": "", "category": "t-shirts"}
    add = reverse("admin:catalog_product_add")
    response = staff.post(add, {**data, "attributes": "Colour: red\nSize: S, M, L\n"})
    assert response.status_code == 302, response.content.decode()[:2000]
    tee = Product.objects.get(sku="ATT-1")
    assert tee.attributes == {"Colour": "red", "Size": ["S", "M", "L"]}
    change = reverse("admin:catalog_product_change", args=[tee.pk])
    shown = lambda: html.unescape(  # noqa: E731  (the attributes box, as the merchandiser reads it)
        re.search(r'name="attributes"[^>]*>\n?(.*?)</textarea>', staff.get(change).content.decode(), re.S)[1]
    )
    assert sorted(shown().splitlines()) == ["Colour: red", "Size: S, M, L"]  # PostgreSQL orders the keys its way
    # numbers and yes/no would come back as text: shown as JSON, kept as they are
    tee.attributes = {"Waist": 32, "Organic": True}
    tee.save()
    assert json.loads(shown()) == {"Waist": 32, "Organic": True}
    # a line that is no "key: value" says how to write one, and nothing is lost
    bad = staff.post(add, {**data, "sku": "ATT-2", "attributes": "Colour red"}).content.decode()
    assert "Line 1: write &quot;key: value&quot;" in bad and not Product.objects.filter(sku="ATT-2").exists()
