"""Properties of the import parser for any text a catalog holds (hypothesis): what a spreadsheet
writes is what is stored, and every line of the file is accounted for (issue 13)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.models import Product
from catalog.services import catalog_import

pytestmark = pytest.mark.django_db

# text as merchandisers type it: any printable character, quotes, commas, line breaks
TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00")
    | st.sampled_from(['"', ",", "\n", "\r", ";", "'", "=", " "]),
    max_size=60,
)
ROWS = st.lists(
    st.fixed_dictionaries(
        {
            "title": TEXT.filter(lambda t: t.strip()),
            "description": TEXT,
            "brand": TEXT.map(lambda t: t[:100]),
            "price": st.decimals(0, 10_000, places=2),
        }
    ),
    min_size=1,
    max_size=8,
)
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def expected(row: dict) -> tuple:
    return row["title"].strip(), row["description"].strip(), row["brand"].strip(), row["price"]


@SETTINGS
@given(ROWS)
def test_what_a_spreadsheet_writes_is_what_is_stored(rows):
    Product.objects.all().delete()
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=["sku", "title", "description", "brand", "price"])
    writer.writeheader()
    for n, row in enumerate(rows):
        writer.writerow({"sku": f"P{n}", **row})
    data = buffer.getvalue().encode()
    report = catalog_import(source=io.BytesIO(data), name="c.csv")
    assert report.failed == 0, report.errors
    assert report.created == len(rows) and report.lines == data.count(b"\n")
    stored = {p.sku: (p.title, p.description, p.brand, p.price) for p in Product.objects.all()}
    assert stored == {f"P{n}": expected(row) for n, row in enumerate(rows)}


@SETTINGS
@given(
    st.lists(
        st.one_of(
            ROWS.map(lambda rs: json.dumps({"sku": "J", **rs[0], "price": str(rs[0]["price"])})),
            st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").decode("latin-1")),
            st.just(""),
            st.just("[" * 2000),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_any_jsonl_is_accounted_for_line_by_line(lines):
    Product.objects.all().delete()
    data = "\n".join(lines).encode("utf-8", "surrogatepass") + b"\n"
    report = catalog_import(source=io.BytesIO(data), name="c.jsonl")  # never raises for a bad line
    blank = sum(1 for line in lines if not line.strip())
    written = report.created + report.updated + report.unchanged
    assert report.lines == len(lines)
    assert written + report.failed + blank == len(lines)
