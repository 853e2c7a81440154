"""The merchandiser's search insights (issue 16): numbers counted from a generated log whose
counts are known, the period and channel choices, the queries that lead to a product, the
admin page, its permission and its CSV exports."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from search.models import SearchEvent
from search.selectors.insights import Period, product_queries, query_table, summary
from search.services.events import click_log
from tests.search.insights_log import NOW, SESSION, search_logged

pytestmark = pytest.mark.django_db


def last_30(channel: str = "all") -> Period:
    today = timezone.localdate(NOW)
    return Period(first=today - timedelta(days=29), last=today, channel=channel)


def test_top_queries_count_searches_clicks_and_positions(insights_log):
    rows = query_table(last_30(), table="top")
    assert [(r.query, r.searches) for r in rows] == [("red mug", 5), ("unicorn", 3), ("blue vase", 2), ("mug", 1)]
    red = rows[0]
    assert (red.clicked, red.clicks, red.zero_results) == (3, 4, 0)
    assert red.ctr == pytest.approx(0.6) and red.mean_position == pytest.approx(7 / 4)


def test_zero_result_and_unclicked_queries(insights_log):
    assert [(r.query, r.zero_results) for r in query_table(last_30(), table="zero")] == [("unicorn", 3)]
    # found something and nobody clicked: not unicorn (found nothing), not red mug (clicked)
    assert [(r.query, r.searches) for r in query_table(last_30(), table="no_clicks")] == [("blue vase", 2)]


def test_a_channel_counts_only_its_own_searches(insights_log):
    api = {r.query: r.searches for r in query_table(last_30("api"), table="top")}
    assert api == {"blue vase": 2, "unicorn": 1, "red mug": 1}
    storefront = {r.query: r.searches for r in query_table(last_30("storefront"), table="top")}
    assert storefront == {"red mug": 4, "unicorn": 2, "mug": 1}


def test_the_summary_and_trend_count_every_search(insights_log):
    totals = summary(last_30())
    assert (totals.searches, totals.word_searches) == (12, 11)  # the photo search counts, without words
    assert (totals.zero_results, totals.clicked, totals.clicks) == (3, 4, 5)
    days = {row.day: (row.searches, row.zero_results, row.clicked) for row in totals.days}
    by_age = {age: days[timezone.localdate(NOW - timedelta(days=age))] for age in (1, 2, 3)}
    assert by_age == {1: (5, 1, 2), 2: (4, 1, 1), 3: (3, 1, 1)}
    # every day of the period is there, the quiet ones at zero
    assert len(totals.days) == 30 and sum(row.searches for row in totals.days) == 12
    assert days[timezone.localdate(NOW - timedelta(days=10))] == (0, 0, 0)


def test_the_queries_that_lead_to_a_product(insights_log):
    rows = product_queries(last_30(), product_id=insights_log["mug"].pk)
    assert [(r.query, r.clicks, r.mean_position) for r in rows] == [
        ("red mug", 3, pytest.approx(4 / 3)),
        ("mug", 1, 4.0),
    ]
    cup = insights_log["cup"].pk
    assert [(r.query, r.clicks) for r in product_queries(last_30(), product_id=cup)] == [("red mug", 1)]


# --- the admin page ----------------------------------------------------------------------
@pytest.fixture
def merchandiser(client):
    user = User.objects.create_user("merch", password="pw-merch-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_insights"))
    client.force_login(user)
    return client


def _cells(html: str, section: str) -> list[list[str]]:
    part = html.split(f'id="{section}"', 1)[1].split("</section>", 1)[0]
    return (
        [
            [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", part.split("<tbody>", 1)[1], re.S)
        ]
        if "<tbody>" in part
        else []
    )


def test_the_insights_page_shows_the_tables_and_charts(insights_log, merchandiser):
    response = merchandiser.get("/admin/search/searchinsight/")
    assert response.status_code == 200
    html = response.content.decode()
    assert _cells(html, "table-top")[0] == ["red mug", "5", "0", "60%", "4", "1.8"]
    assert [row[0] for row in _cells(html, "table-zero")] == ["unicorn"]
    assert [row[0] for row in _cells(html, "table-no_clicks")] == ["blue vase"]
    assert html.count('<svg class="chart"') == 2 and "Searches per day" in html
    assert re.search(r'id="total-searches">12<', html)


def test_a_product_sku_shows_the_queries_that_lead_to_it_and_an_unknown_one_says_so(insights_log, merchandiser):
    html = merchandiser.get("/admin/search/searchinsight/", {"sku": "mug-1"}).content.decode()
    assert _cells(html, "product-queries") == [["red mug", "3", "1.3"], ["mug", "1", "4.0"]]
    response = merchandiser.get("/admin/search/searchinsight/", {"sku": "NOPE"})
    assert response.status_code == 400 and "No product has the SKU &#x27;NOPE&#x27;." in response.content.decode()


def test_dates_the_wrong_way_round_say_what_to_fix(merchandiser):
    response = merchandiser.get("/admin/search/searchinsight/", {"start": "2026-05-10", "end": "2026-05-01"})
    assert response.status_code == 400 and "The start date is after the end date" in response.content.decode()
    assert merchandiser.get("/admin/search/searchinsight/", {"start": "not a date"}).status_code == 400


def test_each_table_exports_as_csv_and_a_query_never_becomes_a_formula(insights_log, merchandiser):
    search_logged('=HYPERLINK("http://x")', days_ago=1)
    response = merchandiser.get("/admin/search/searchinsight/", {"channel": "all", "export": "top"})
    assert response["Content-Type"].startswith("text/csv") and "search-top-" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:3] == ["query", "searches", "zero_results"]
    assert rows[1] == ["red mug", "5", "0", "3", "4", "0.6000", "1.75"]
    assert ['\'=hyperlink("http://x")'] == [r[0] for r in rows if "hyperlink" in r[0]]  # as the log folds it
    days = list(
        csv.reader(io.StringIO(merchandiser.get("/admin/search/searchinsight/", {"export": "days"}).content.decode()))
    )
    assert sum(int(r[1]) for r in days[1:]) == 13
    assert merchandiser.get("/admin/search/searchinsight/", {"export": "everything"}).status_code == 400


def test_insights_need_their_own_permission(insights_log, client):
    staff = User.objects.create_user("clerk", password="pw-clerk-1", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="change_product"))
    client.force_login(staff)
    assert client.get("/admin/search/searchinsight/").status_code == 403
    assert "Search insights" not in client.get("/admin/").content.decode()
    client.logout()
    assert client.get("/admin/search/searchinsight/").status_code == 302  # to the login page


def test_a_repeated_click_counts_once_on_its_search(insights_log):
    event = SearchEvent.objects.filter(query="red mug", click_count=2).get()
    product = insights_log["mug"]
    SearchEvent.objects.filter(pk=event.pk).update(created_at=timezone.now())  # the repeat comes within the window
    assert click_log(search_id=str(event.pk), product_id=product.pk, session_key=SESSION).created is False
    event.refresh_from_db()
    assert (event.click_count, event.click_position_sum) == (2, 4)  # positions 1 and 3, once each


def test_searches_logged_before_get_their_day_and_clicks_from_the_migration(insights_log):
    import importlib

    from django.apps import apps

    backfill = importlib.import_module("search.migrations.0004_search_day_and_clicks").backfill
    expected = {e.pk: (e.day, e.click_count, e.click_position_sum) for e in SearchEvent.objects.all()}
    SearchEvent.objects.update(day=None, click_count=0, click_position_sum=0)  # as an older version left them
    backfill(apps, None)
    assert {e.pk: (e.day, e.click_count, e.click_position_sum) for e in SearchEvent.objects.all()} == expected


def test_a_shopper_filtering_sorting_and_paging_one_query_is_one_search(client, shop):
    from search.selectors.insights import filter_table

    # one visit: "red", a filter, another, the sort, a page; then new words, then "red" again
    for params in (
        {"q": "red"},
        {"q": "red", "brand": "Acme"},
        {"q": "red", "brand": "Acme", "category": "lamps"},
        {"q": "red", "brand": "Acme", "sort": "price_asc"},
        {"q": "red", "page_size": 2, "page": 2},
        {"q": "blue"},
        {"q": "red", "brand": "Acme"},
    ):
        assert client.get("/", params).status_code == 200
    refined = SearchEvent.objects.filter(query="red").order_by("created_at")
    last = refined.last()
    page = client.get(f"/r/{last.pk.hex}/{shop['red-lamp']}/")  # a click on the last refinement
    assert page.status_code == 302

    top = {row.query: row for row in query_table(last_30())}
    # two searches of "red" (one before "blue", one after), each with its filters and pages
    assert top["red"].searches == 2 and top["blue"].searches == 1
    assert top["red"].clicks == 1 and top["red"].clicked == 1  # the click on a refinement counts for it
    assert summary(last_30()).searches == 3
    filters = {(row.field, row.label): row.searches for row in filter_table(last_30())}
    assert filters[("brand", "Acme")] == 2 and filters[("category", "lamps")] == 1
    # a filter the words named is the query's: not one the shopper chose
    client.get("/", {"q": "wool socks under $10"})
    chosen = {(row.field, row.label) for row in filter_table(last_30())}
    assert ("category", "socks") not in chosen and ("price", "Under $10") not in chosen


def test_a_day_without_searches_is_a_gap_in_the_rates_not_zero_and_dates_do_not_crowd():
    from datetime import date

    from search.web.charts import rate_chart

    days = [date(2026, 11, 1) + timedelta(days=n) for n in range(30)]
    rates = [0.5 if n % 10 != 4 else None for n in range(30)]  # the 5th, 15th and 25th: no searches
    svg = str(rate_chart(days, {"Click-through rate": (rates, "#1b7f3b")}, title="Rates"))
    assert svg.count("<polyline") == 4  # four stretches between three quiet days
    assert "2026-11-05" not in svg and svg.count("<circle") == 27
    assert len(re.findall(r"<text[^>]*>Nov \d\d</text>", svg)) <= 6
