"""The merchandiser's ranking rules and synonyms in the admin (issue 16): what a bad rule is told,
the preview against live results (nothing saved), and the permissions."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission, User

from catalog.models import Product
from search.models import RankingRule, Synonym

pytestmark = [pytest.mark.django_db]


def staff(client, *codenames: str, name: str = "merch"):
    user = User.objects.create_user(name, password=f"pw-{name}-1", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


@pytest.fixture
def merchandiser(client):
    return staff(
        client,
        "add_rankingrule",
        "change_rankingrule",
        "view_rankingrule",
        "add_synonym",
        "change_synonym",
        "view_synonym",
    )


def pin_form(**changes) -> dict:
    form = {
        "match": "exact",
        "query": "red mug",
        "action": "pin",
        "product": "",
        "position": "1",
        "field": "",
        "attribute": "",
        "value": "",
        "strength": "50",
        "note": "",
        "active": "on",
        "starts_at": "",
        "ends_at": "",
    }
    form.update(changes)
    return form


def rows(html: str, table: str) -> list[list[str]]:
    part = html.split(f'class="{table}"', 1)[1].split("</table>", 1)[0].split("<tbody>", 1)[1]
    return [
        [re.sub(r"<[^>]+>", " ", c).split()[0] if c.strip() else "" for c in re.findall(r"<td>(.*?)</td>", r, re.S)]
        for r in re.findall(r"<tr[^>]*>(.*?)</tr>", part, re.S)
    ]


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"product": ""}, "product", "Choose the product to pin."),
        ({"position": ""}, "position", "Give the position to pin it to: 1 to 100, 1 is the first."),
        ({"query": " ?! "}, "query", "Type the query this rule is for"),
        ({"action": "boost", "field": ""}, "field", "Choose what the products to boost must have"),
        ({"action": "bury", "field": "attribute", "value": "red"}, "attribute", "Name the attribute"),
        ({"action": "boost", "field": "brand", "value": "  "}, "value", "Give the value the products must have"),
        (
            {"starts_at": "2026-12-01T10:00", "ends_at": "2026-11-30T10:00"},
            "ends_at",
            "The rule would end before it starts",
        ),
    ],
)
def test_a_rule_missing_what_it_needs_says_what_to_fix_and_is_not_saved(merchandiser, shop, changes, field, message):
    form = pin_form(**{"product": str(shop["green-mug"]), **changes})
    response = merchandiser.post("/admin/search/rankingrule/add/", form)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not RankingRule.objects.exists()


def test_a_second_product_pinned_at_a_taken_position_is_refused(merchandiser, shop):
    add = "/admin/search/rankingrule/add/"
    assert merchandiser.post(add, pin_form(product=str(shop["green-mug"]))).status_code == 302
    response = merchandiser.post(add, pin_form(query="Red  MUG", product=str(shop["red-lamp"])))
    assert "green-mug is already pinned at position 1 for this query" in response.content.decode()
    assert RankingRule.objects.count() == 1


def test_a_synonym_of_two_words_is_refused_and_the_words_are_kept_folded(merchandiser):
    response = merchandiser.post("/admin/search/synonym/add/", {"words": "tee shirt, top", "active": "on"})
    assert "“tee shirt” is 2 words" in response.content.decode() and not Synonym.objects.exists()
    assert (
        "at least two words"
        in merchandiser.post("/admin/search/synonym/add/", {"words": "Sofa,", "active": "on"}).content.decode()
    )
    merchandiser.post("/admin/search/synonym/add/", {"words": "Sofa, COUCH, sofa, Settée", "active": "on"})
    assert Synonym.objects.get().words == "sofa, couch, settee"


def test_the_preview_shows_the_results_now_and_with_the_rule_and_saves_nothing(merchandiser, vector_engine, shop):
    response = merchandiser.post(
        "/admin/search/rankingrule/preview/", pin_form(product=str(shop["blue-sock"]), position="2")
    )
    html = response.content.decode()
    assert response.status_code == 200, html
    now, then = rows(html, "preview-now"), rows(html, "preview-then")
    assert "blue-sock" not in [r[1] for r in now]
    assert then[1][:2] == ["2", "blue-sock"] and then[1][-1] == "new"
    assert then[0][1] == now[0][1] and then[2][1] == now[1][1] and then[2][-1] == "2"  # moved down one
    counts = re.search(r"“red mug”: (\d+) results now, (\d+) with this ranking rule saved", html)
    assert counts and int(counts[2]) == int(counts[1]) + 1
    # each product with its picture (a blank square where it has none), as the storefront shows it
    preview = html[html.index('class="preview-then"') :]
    assert '<img src="/media/' in preview and 'class="thumb none"' in preview
    assert not RankingRule.objects.exists()


def test_the_preview_names_what_leaves_the_page(merchandiser, vector_engine, shop):
    html = merchandiser.post(
        "/admin/search/rankingrule/preview/", pin_form(action="hide", product=str(shop["no-image"]))
    ).content.decode()
    assert "no-image" in [r[1] for r in rows(html, "preview-now")]
    assert "no-image" not in [r[1] for r in rows(html, "preview-then")]
    assert '<p id="preview-gone">No longer shown on this page: no-image.</p>' in html


def test_the_preview_of_an_edit_replaces_the_saved_rule_and_of_a_synonym_shows_what_it_finds(
    merchandiser, vector_engine, shop
):
    saved = RankingRule.objects.create(action="hide", query="red mug", product=Product.objects.get(sku="no-desc"))
    html = merchandiser.post(
        f"/admin/search/rankingrule/preview/?id={saved.pk}",
        pin_form(action="hide", product=str(shop["no-desc"]), active=""),
    ).content.decode()
    assert "no-desc" not in [r[1] for r in rows(html, "preview-now")]
    assert "no-desc" in [r[1] for r in rows(html, "preview-then")]  # switched off: shown again
    html = merchandiser.post(
        "/admin/search/synonym/preview/", {"words": "crimson, red", "active": "on", "preview_query": "crimson"}
    ).content.decode()
    assert "No results." in html.split('class="preview-now"', 1)[1].split("</table>", 1)[0]
    assert {r[1] for r in rows(html, "preview-then")} <= {"no-image", "no-desc", "red-scarf", "red-lamp"}
    assert rows(html, "preview-then")


def test_a_preview_of_a_bad_rule_or_without_a_query_says_what_to_fix(merchandiser, shop):
    html = merchandiser.post("/admin/search/rankingrule/preview/", pin_form(position="")).content.decode()
    assert "Choose the product to pin." in html and "Give the position to pin it to" in html
    html = merchandiser.post(
        "/admin/search/rankingrule/preview/", pin_form(match="any", query="", product=str(shop["red-lamp"]))
    ).content.decode()
    assert "Type a query to preview this with." in html
    for unknown in ("999", "99999999999999999999999", "abc"):
        assert merchandiser.post(f"/admin/search/rankingrule/preview/?id={unknown}", pin_form()).status_code == 404
    assert merchandiser.get("/admin/search/rankingrule/preview/").status_code == 405


def test_rules_and_synonyms_need_their_own_permissions(client, shop):
    clerk = staff(client, "change_product", "view_insights")
    for url in ("/admin/search/rankingrule/", "/admin/search/rankingrule/add/", "/admin/search/synonym/"):
        assert clerk.get(url).status_code == 403
    assert clerk.post("/admin/search/rankingrule/preview/", pin_form(product=str(shop["red-lamp"]))).status_code == 403
    index = clerk.get("/admin/").content.decode()
    assert "Ranking rules" not in index and "Synonyms" not in index
    client.logout()
    viewer = staff(client, "view_rankingrule", name="viewer")  # may look, not change
    assert viewer.get("/admin/search/rankingrule/").status_code == 200
    assert viewer.post("/admin/search/rankingrule/preview/", pin_form(product=str(shop["red-lamp"]))).status_code == 403


def test_each_insights_query_is_a_step_from_a_rule_or_a_synonym_for_it(client, insights_log):
    acting = staff(client, "view_insights", "add_rankingrule", "add_synonym")
    html = acting.get("/admin/search/searchinsight/").content.decode()
    top = html.split('id="table-top"', 1)[1].split("</section>", 1)[0]
    link = re.search(r'<a href="([^"]+)" aria-label="Add a ranking rule for “red mug”">Rule</a>', top)
    assert link
    form = acting.get(link[1].replace("&amp;", "&")).content.decode()
    assert re.search(r'<input[^>]+name="query"[^>]+value="red mug"', form)
    zero = html.split('id="table-zero"', 1)[1].split("</section>", 1)[0]
    synonym = re.search(r'<a href="([^"]+)" aria-label="Add a synonym for “unicorn”">Synonym</a>', zero)
    assert synonym and "unicorn, " in acting.get(synonym[1]).content.decode()


def test_the_rules_list_reads_its_pins_products_in_one_query_however_many(merchandiser, shop):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_for_the_list() -> int:
        with CaptureQueriesContext(connection) as seen:
            assert merchandiser.get("/admin/search/rankingrule/").status_code == 200
        return len(seen)

    skus = list(Product.objects.values_list("sku", flat=True))
    RankingRule.objects.create(action="pin", query="mug 0", product=Product.objects.get(sku=skus[0]), position=1)
    few = queries_for_the_list()
    for n, sku in enumerate(skus[1:6], start=1):
        RankingRule.objects.create(
            action="hide" if n % 2 else "pin",
            query=f"mug {n}",
            product=Product.objects.get(sku=sku),
            position=None if n % 2 else 1,
        )
    assert queries_for_the_list() == few


def test_the_database_refuses_a_second_pin_at_a_taken_position_whatever_saves_it(shop):
    from django.core.exceptions import ValidationError
    from django.db import IntegrityError, transaction

    from search.services.merchandising import ranking_rule_save

    mug, vase = Product.objects.get(sku="green-mug"), Product.objects.get(sku="blue-vase")
    RankingRule.objects.create(action="pin", query="Red mug", product=mug, position=1)
    # a save that skipped the form's check (a shell, a second admin at the same moment)
    with pytest.raises(IntegrityError), transaction.atomic():
        RankingRule.objects.create(action="pin", query="  red, MUG ", product=vase, position=1)
    # the service says what to do instead of failing
    with pytest.raises(ValidationError, match="green-mug is already pinned at position 1 for this query"):
        ranking_rule_save(rule=RankingRule(action="pin", query="red mug", product=vase, position=1))
    # another position, another query, or the rule switched off is fine
    ranking_rule_save(rule=RankingRule(action="pin", query="red mug", product=vase, position=2))
    ranking_rule_save(rule=RankingRule(action="pin", query="blue mug", product=vase, position=1))
    ranking_rule_save(rule=RankingRule(action="pin", query="red mug", product=vase, position=1, active=False))
    assert RankingRule.objects.filter(action="pin", active=True).count() == 3
    # rules made in bulk (a data import) are compared the same way: other queries are no clash
    RankingRule.objects.bulk_create(
        [RankingRule(action="pin", query=f"mug {n}", product=vase, position=1) for n in range(3)]
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        RankingRule.objects.bulk_create([RankingRule(action="pin", query="RED mug!", product=vase, position=1)])
