"""Product images on an S3-compatible store (issue 15): with a bucket configured, what the
admin or an import saves lands in the bucket, the indexer reads it back from there (a worker on
another host has no media folder), and the storefront shows it from the store, its policy
letting the images load. moto's S3 server stands in for AWS S3 or MinIO."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from catalog.models import IndexStatus
from search.retrieval import providers
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db
BUCKET = "shop-media"


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_media(s3_endpoint, settings, tmp_path, monkeypatch):
    """The settings a shop sets in .env for a bucket (shop_search/settings.py builds STORAGES)."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": s3_endpoint,
                "region_name": "us-east-1",
                "access_key": "test",
                "secret_key": "test",
                "location": "media",
                "custom_domain": None,
                "querystring_auth": True,
                "querystring_expire": 3600,
                "file_overwrite": False,
            },
        },
    }
    settings.MEDIA_ORIGIN = s3_endpoint
    settings.MEDIA_ROOT = tmp_path / "no-media-here"
    yield client


def test_a_saved_image_lives_in_the_bucket_and_is_indexed_from_it(s3_media, make_product, settings):
    product = make_product("Red ceramic mug", image=png_bytes("red"))
    product.refresh_from_db()
    keys = [o["Key"] for o in s3_media.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert f"media/{product.image.name}" in keys
    assert not settings.MEDIA_ROOT.exists()  # nothing on this host's disk: the worker read the bucket
    assert product.index_status == IndexStatus.INDEXED, product.index_error
    point = providers.get_product_index().retrieve([product.pk])[product.pk]
    assert "image" in point.vector and point.payload["has_image"]


def test_the_storefront_shows_the_image_from_the_store_and_lets_it_load(s3_media, make_product, client, s3_endpoint):
    make_product("Blue linen scarf", image=png_bytes("blue"), category="scarves")
    response = client.get("/?q=scarf")
    page = response.content.decode()
    assert f'src="{s3_endpoint}/{BUCKET}/media/' in page.replace("&amp;", "&")
    policy = response["Content-Security-Policy"]
    assert f"img-src {s3_endpoint} 'self'" in policy
    url = page.split(f'src="{s3_endpoint}/', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    with urllib.request.urlopen(f"{s3_endpoint}/{url}", timeout=10) as image:  # a signed URL a browser can load
        assert image.status == 200 and image.read() == png_bytes("blue")
