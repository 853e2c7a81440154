"""The merchandiser's search insights at a million logged searches: each number the page shows,
counted in the database, against its floor measured in the same run: counting the period's
searches (one pass over the rows the page reads, nothing grouped or joined).

A generated log: --searches over 90 days (each carrying its day and click count, as the click
service keeps them), queries drawn Zipf-like from --queries distinct ones,
8% finding nothing, about a third clicked (1-3 clicks at positions skewed to the top), channels
mixed as a storefront's are. SQLite in a temp dir (or DATABASE_URL, e.g. PostgreSQL).

    .venv/bin/python benchmarks/insights_latency.py --searches 1000000
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

from common import table

ROOT = Path(__file__).resolve().parent.parent


def setup(database_url: str | None) -> Path:
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="shop-insights-"))
    os.environ.update(
        {"SHOP_SEARCH_VAR_DIR": str(tmp), "DJANGO_SETTINGS_MODULE": "shop_search.settings", "LOG_LEVEL": "WARNING"}
    )
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return tmp


def generate(searches: int, queries: int, seed: int) -> None:
    from decimal import Decimal

    from django.db import transaction
    from tqdm import tqdm

    from catalog.models import Product
    from search.models import Click, SearchEvent

    rng = random.Random(seed)
    products = Product.objects.bulk_create(
        [Product(sku=f"P{n:05d}", title=f"Product {n}", price=Decimal("10")) for n in range(2000)]
    )
    words = [f"query {n}" for n in range(queries)]
    weights = [1 / (rank + 1) for rank in range(queries)]
    channels = ["page"] * 5 + ["htmx"] * 12 + ["api"] * 2 + ["photo_page"]
    batch = 20_000
    with tqdm(total=searches, desc="log", unit="search", file=sys.stderr) as bar:
        for start in range(0, searches, batch):
            events, clicks = [], []
            picked = rng.choices(words, weights=weights, k=min(batch, searches - start))
            for query in picked:
                channel = rng.choice(channels)
                photo = channel == "photo_page"
                found = 0 if rng.random() < 0.08 else rng.randint(1, 400)
                event = SearchEvent(
                    id=uuid.UUID(int=rng.getrandbits(128)),
                    channel=channel,
                    mode="image" if photo else "text",
                    query="" if photo else query,
                    query_normalized="" if photo else query,
                    sort="relevance",
                    strategy="normalized",
                    result_count=found,
                )
                events.append(event)
                if found and rng.random() < 0.35:
                    chosen = {
                        min(int(rng.expovariate(1 / 200)), len(products) - 1)
                        for _ in range(rng.choice((1, 1, 1, 2, 3)))
                    }
                    positions = rng.sample(range(1, 21), k=len(chosen))
                    for index, position in zip(chosen, positions):
                        product = products[index]
                        position = min(position, int(rng.expovariate(1 / 3)) + 1)
                        clicks.append(Click(search=event, product=product, product_sku=product.sku, position=position))
                        # what the click service keeps on the search
                        event.click_count += 1
                        event.click_position_sum += position
            with transaction.atomic():
                SearchEvent.objects.bulk_create(events)
                Click.objects.bulk_create(clicks)
            bar.update(len(events))
    # auto_now_add stamped every row with now: spread them over the 90 days as generated
    _spread_times(SearchEvent, rng)
    # the planner's statistics and PostgreSQL's visibility map, as autovacuum would leave them
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


def _spread_times(model, rng) -> None:
    """bulk_create stamps auto_now_add fields with now; give each search a time in the last 90 days,
    the same for every run with the same seed (derived from its id)."""
    from django.db import connection

    table_name = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"UPDATE {table_name} SET created_at = datetime('now', "
                f"'-' || (abs(random()) % (90 * 86400)) || ' seconds')"
            )
            cursor.execute(f"UPDATE {table_name} SET day = date(created_at)")  # TIME_ZONE is UTC here
        else:
            cursor.execute(f"UPDATE {table_name} SET created_at = now() - (random() * interval '90 days')")
            cursor.execute(f"UPDATE {table_name} SET day = (created_at AT TIME ZONE 'UTC')::date")


def timed(call, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--searches", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=20_000, help="distinct queries")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the median is shown")
    parser.add_argument("--database-url", help="default: SQLite in a temp dir")
    args = parser.parse_args()

    setup(args.database_url)
    from django.db import connection
    from django.db.models import Count
    from django.utils import timezone

    from search.models import Click, SearchEvent
    from search.selectors.insights import Period, period_searches, product_queries, query_tables, summary

    generate(args.searches, args.queries, seed=5)
    top_product = Click.objects.values("product").annotate(n=Count("id")).order_by("-n")[0]["product"]
    today = timezone.localdate()
    rows = []
    for label, days, channel in (
        ("last 30 days, all channels", 30, "all"),
        ("last 91 days, all channels", 91, "all"),
        ("last 30 days, storefront", 30, "storefront"),
    ):
        period = Period(first=today - timedelta(days=days - 1), last=today, channel=channel)
        floor, count = timed(lambda: period_searches(period).count(), args.repeat)
        rows.append([label, "count the period's searches (floor)", f"{floor:.0f}", "1.0", f"{count:,} searches"])
        for name, call in (
            ("the three query tables (one grouping)", lambda: query_tables(period)),
            ("totals and every day (trend)", lambda: summary(period)),
            ("queries leading to the most clicked product", lambda: product_queries(period, product_id=top_product)),
        ):
            ms, _ = timed(call, args.repeat)
            rows.append([label, name, f"{ms:.0f}", f"{ms / floor:.1f}", ""])
        page_ms = sum(float(r[2]) for r in rows[-3:])
        rows.append([label, "the whole page (the three above)", f"{page_ms:.0f}", f"{page_ms / floor:.1f}", ""])
    print(
        f"\n{connection.vendor}, {SearchEvent.objects.count():,} searches, {Click.objects.count():,} clicks, "
        f"{args.queries:,} distinct queries, cores {os.cpu_count()}, median of {args.repeat}\n"
    )
    print(table(["period", "what", "ms", "x floor", "note"], rows))


if __name__ == "__main__":
    main()
