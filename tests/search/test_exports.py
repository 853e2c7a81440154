"""Exports for data teams: events and triplets in JSONL, CSV, Parquet; permission; retention."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone

from search.models import Click, SearchEvent
from tests.shop_fixtures import png

pytestmark = pytest.mark.django_db


def click(client, search_id, product_id):
    response = client.post(
        "/api/clicks", {"search_id": search_id, "product_id": product_id}, content_type="application/json"
    )
    assert response.status_code == 201, response.content


@pytest.fixture
def log(client, shop, concept):
    """Two text searches with clicks, one without, one photo search with a click."""
    client.defaults["HTTP_X_SESSION_ID"] = "shopper-1"  # clicks count for their session's searches
    red = client.get("/api/search", {"q": "red", "page_size": 5}).json()
    click(client, red["search_id"], red["results"][2]["id"])  # position 3: 1 and 2 were skipped
    click(client, red["search_id"], red["results"][3]["id"])  # position 4: 1 and 2 again (3 was clicked)
    vase = client.get("/api/search", {"q": "blue vase", "page_size": 5}).json()
    click(client, vase["search_id"], vase["results"][0]["id"])  # position 1: nothing above, no triplet
    client.get("/api/search", {"q": "lamp"})
    photo = SimpleUploadedFile("q.png", png(concept.picture("red", "mug")), content_type="image/png")
    image = client.post("/api/search/image", {"image": photo}).json()
    click(client, image["search_id"], image["results"][1]["id"])  # no query text: no triplet
    return {"red": red, "vase": vase}


def export(tmp_path, kind, fmt, *extra, name: str = "") -> str:
    out = tmp_path / f"{name or kind}.{fmt}"
    call_command("export_clicks", "--kind", kind, "--format", fmt, "--out", str(out), *extra)
    return str(out)


def test_triplets_take_skipped_higher_ranked_results_as_negatives(tmp_path, log):
    path = export(tmp_path, "triplets", "jsonl")
    rows = [json.loads(line) for line in open(path)]
    red = {r["sku"]: r for r in log["red"]["results"]}
    by_position = {r["position"]: r for r in log["red"]["results"]}

    pairs = {(r["positive_position"], r["negative_position"]) for r in rows}
    assert pairs == {(3, 1), (3, 2), (4, 1), (4, 2)}
    assert all(r["query"] == "red" for r in rows)
    first = next(r for r in rows if (r["positive_position"], r["negative_position"]) == (3, 1))
    assert first["positive_id"] == by_position[3]["id"] and first["negative_id"] == by_position[1]["id"]
    assert by_position[3]["title"] in first["positive"] and by_position[1]["title"] in first["negative"]
    has_image = {r["id"]: r["image_url"] is not None for r in red.values()}
    assert (first["positive_image"] is not None) == has_image[first["positive_id"]]


@pytest.mark.parametrize("kind, extra", [("events", ()), ("triplets", ()), ("triplets", ("--text-only",))])
def test_every_format_has_the_same_columns_in_the_same_order(tmp_path, log, kind, extra):
    import csv

    import pyarrow.parquet as pq

    from search.services.exports import export_columns

    # given: the columns an export promises
    expected = export_columns(kind, text_only=bool(extra))
    # then: the JSONL keys, the CSV header and the Parquet schema are those, in that order
    with open(export(tmp_path, kind, "jsonl", *extra)) as handle:
        assert {tuple(json.loads(line)) for line in handle} == {tuple(expected)}
    with open(export(tmp_path, kind, "csv", *extra), newline="") as handle:
        assert next(csv.reader(handle)) == expected
    assert pq.read_schema(export(tmp_path, kind, "parquet", *extra)).names == expected


@pytest.mark.parametrize("fmt, loader", [("jsonl", "json"), ("csv", "csv"), ("parquet", "parquet")])
def test_exports_round_trip_through_datasets(tmp_path, log, fmt, loader):
    from datasets import load_dataset

    events = load_dataset(
        loader, data_files=export(tmp_path, "events", fmt), split="train", cache_dir=str(tmp_path / "hf")
    )
    triplets = load_dataset(
        loader, data_files=export(tmp_path, "triplets", fmt), split="train", cache_dir=str(tmp_path / "hf")
    )
    text_only = load_dataset(
        loader,
        data_files=export(tmp_path, "triplets", fmt, "--text-only", name="st"),
        split="train",
        cache_dir=str(tmp_path / "hf"),
    )

    assert events.num_rows == 4
    assert triplets.num_rows == 4 and triplets.column_names[:3] == ["query", "positive", "negative"]
    assert text_only.column_names == ["query", "positive", "negative"]  # sentence-transformers' form
    red = next(e for e in events if e["query"] == "red")
    impressions = red["impressions"] if fmt != "csv" else json.loads(red["impressions"])
    clicks = red["clicks"] if fmt != "csv" else json.loads(red["clicks"])
    assert [i["position"] for i in impressions] == [1, 2, 3, 4]
    assert sorted(c["position"] for c in clicks) == [3, 4]


def test_dates_bound_the_export(tmp_path, log):
    SearchEvent.objects.filter(query="blue vase").update(created_at=timezone.now() - timedelta(days=10))
    today = timezone.localdate().isoformat()
    path = export(tmp_path, "events", "jsonl", "--since", today, "--until", today)
    assert {json.loads(line)["query"] for line in open(path)} == {"red", "lamp", ""}


def test_the_command_refuses_bad_dates(tmp_path):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        export(tmp_path, "events", "jsonl", "--since", "yesterday")


def test_the_export_endpoint_needs_the_data_team_permission(client, log):
    url = "/api/exports/clicks?kind=triplets&format=jsonl"
    assert client.get(url).status_code == 403
    user = User.objects.create_user("analyst", password="pw-analyst-1")
    client.force_login(user)
    assert client.get(url).status_code == 403

    user.user_permissions.add(Permission.objects.get(codename="export_clicks"))
    client.force_login(User.objects.get(pk=user.pk))
    response = client.get(url)

    assert response.status_code == 200 and response.streaming
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert len(rows) == 4
    parquet = client.get("/api/exports/clicks?kind=events&format=parquet")
    import pyarrow.parquet as pq

    assert pq.read_table(io.BytesIO(b"".join(parquet.streaming_content))).num_rows == 4
    assert client.get("/api/exports/clicks?kind=everything").status_code == 400
    # an empty value is a value, and a wrong one: it was taken as "left out" (issue 29)
    empty_format = client.get("/api/exports/clicks?kind=events&format=")
    assert empty_format.status_code == 400 and "format" in empty_format.json()
    empty_since = client.get("/api/exports/clicks?kind=events&since=")
    assert empty_since.status_code == 400 and "since" in empty_since.json()


def test_prune_removes_old_searches_with_their_clicks(log, capsys):
    SearchEvent.objects.filter(query="red").update(created_at=timezone.now() - timedelta(days=40))
    call_command("prune_search_logs", "--older-than", "30")
    assert "Deleted 1 searches" in capsys.readouterr().out
    assert not SearchEvent.objects.filter(query="red").exists()
    assert Click.objects.count() == 2 and SearchEvent.objects.count() == 3


def test_prune_deletes_shoppers_photos_once_they_expire(log, capsys, settings):
    from search.models import SearchPhoto
    from search.services import photo_bytes, photo_save
    from tests.conftest import png_bytes

    settings.SEARCH_PHOTO_DAYS = 7
    old, recent = photo_save(data=png_bytes("red")), photo_save(data=png_bytes("blue"))
    SearchPhoto.objects.filter(key=old).update(created_at=timezone.now() - timedelta(days=8))
    assert photo_bytes(key=old) is None and photo_bytes(key=recent)  # expired: no longer served
    call_command("prune_search_logs", "--older-than", "30")
    assert "Deleted 1 photo(s)" in capsys.readouterr().out
    assert list(SearchPhoto.objects.values_list("key", flat=True)) == [recent]


def test_csv_exports_show_a_formula_typed_as_a_query_as_text(tmp_path, client, shop):
    import csv

    for query in ('=HYPERLINK("http://evil","x")', "+1+1", "@SUM(A1)", "-2+3", "red mug"):
        client.get("/api/search", {"q": query})
    with open(export(tmp_path, "events", "csv"), newline="") as handle:
        queries = [row["query"] for row in csv.DictReader(handle)]
    assert queries == ['\'=HYPERLINK("http://evil","x")', "'+1+1", "'@SUM(A1)", "'-2+3", "red mug"]
    rows = [json.loads(line) for line in open(export(tmp_path, "events", "jsonl"))]
    assert rows[0]["query"].startswith("=HYPERLINK")  # JSONL keeps the text as typed


def test_only_relevance_ordered_word_searches_give_negatives(tmp_path, client, log):
    # given: the same words sorted by price, clicked below two cheaper products, and a browse
    # clicked below two newer ones (issue 32: the cheaper mugs above a click became negatives)
    by_price = client.get("/api/search", {"q": "red", "page_size": 5, "sort": "price_asc"}).json()
    click(client, by_price["search_id"], by_price["results"][2]["id"])
    browse = client.get("/api/search", {"q": "", "page_size": 5}).json()
    click(client, browse["search_id"], browse["results"][2]["id"])

    rows = [json.loads(line) for line in open(export(tmp_path, "triplets", "jsonl"))]

    # then: the triplets are the relevance-ordered search's only; the sorted list and the browse
    # give no negative (their order says nothing about how well a product fits the words)
    assert {r["search_id"] for r in rows} == {log["red"]["search_id"].replace("-", "")}
    assert {r["sort"] for r in rows} == {"relevance"}


def test_the_click_calibration_learns_only_from_relevance_ordered_lists(client, log):
    from search.services.calibrating import evidence_from_clicks

    # given: the evidence of "red", clicked 3rd and 4th in relevance order
    before = evidence_from_clicks().labels["red"]
    # when: "red" is sorted by price and its last product clicked
    by_price = client.get("/api/search", {"q": "red", "sort": "price_asc"}).json()
    click(client, by_price["search_id"], by_price["results"][-1]["id"])

    # then: the evidence is the relevance-ordered list's alone, each product examined as often
    assert evidence_from_clicks().labels["red"] == before


def test_triplets_say_which_filters_their_search_had(tmp_path, client, log):
    # given: a relevance-ordered search narrowed to a category, clicked at position 2
    red = client.get("/api/search", {"q": "red", "page_size": 5, "category": "Mugs"}).json()
    click(client, red["search_id"], red["results"][1]["id"])

    rows = [json.loads(line) for line in open(export(tmp_path, "triplets", "jsonl"))]

    filtered = [r for r in rows if r["search_id"] == red["search_id"].replace("-", "")]
    assert len(filtered) == 1 and filtered[0]["filters"]["category"] == ["mugs"]  # as logged: folded
    assert {tuple(r["filters"]["category"]) for r in rows} == {(), ("mugs",)}


def test_parquet_columns_are_typed(tmp_path, log):
    import pyarrow as pa
    import pyarrow.parquet as pq

    events = pq.read_table(export(tmp_path, "events", "parquet"))
    triplets = pq.read_table(export(tmp_path, "triplets", "parquet"))

    # then: times are timestamps and filters a structure a data team queries without parsing JSON
    assert events.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    clicks = events.schema.field("clicks").type.value_type
    assert clicks.field("created_at").type == pa.timestamp("us", tz="UTC")
    for table in (events, triplets):
        filters = table.schema.field("filters").type
        assert pa.types.is_struct(filters) and pa.types.is_list(filters.field("category").type)
        attributes = filters.field("attributes").type
        assert pa.types.is_list(attributes) and attributes.value_type.names == ["field", "values"]
    red = next(row for row in events.to_pylist() if row["query"] == "red")
    assert red["created_at"].tzinfo is not None and red["filters"]["category"] == []
    assert pa.types.is_struct(events.schema.field("merchandising").type)
