"""Online experiments end to end: started by the command, searched on the API, the storefront
and by simulated shoppers, logged, reported, shown in the admin, stopped and promoted."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from search.models import Experiment, FusionCalibration, SearchEvent, SearchImpression
from search.selectors import product_search

pytestmark = pytest.mark.django_db


def vocabulary_kept(settings) -> None:
    """The shop is made and will not change: its words are read once more, then kept, not read
    again at each of the simulated shoppers' thousands of searches (the tests' default, 0,
    reads them each time, with a query over the growing click log: 40 minutes on PostgreSQL)."""
    from search.selectors.lexicon import lexicon_forget

    settings.SEARCH_VOCABULARY_SECONDS = 3600
    lexicon_forget()


QUERIES = [
    {"query": "red mug", "relevance": {"no-image": 3, "no-desc": 3, "green-mug": 1}},
    {"query": "blue vase", "relevance": {"blue-vase": 3, "vase-text-only": 3}},
    {"query": "blue glass lamp", "relevance": {"lamp-text-only": 3, "red-lamp": 1}},
]


def start(name: str, method: str, *candidate: str) -> None:
    call_command("experiment", "start", name, "--method", method, *candidate)


def search(client, query: str, session: str | None, **params) -> dict:
    headers = {"HTTP_X_SESSION_ID": session} if session else {}
    response = client.get("/api/search", {"q": query, **params}, **headers)
    assert response.status_code == 200, response.content
    return response.json()


def logged(search_id: str) -> SearchEvent:
    from search.services.events import search_log_flush

    search_log_flush()
    return SearchEvent.objects.get(pk=search_id)


def test_an_interleaved_search_shows_both_rankings_merged_and_credits_each_product(client, shop):
    # given: a candidate that ranks by the image vectors alone, interleaved with the serving ranking
    start("image-only", "interleave", "--candidate-strategy", "image")

    # when: a shopper with a session searches twice, and a client without one searches once
    first = search(client, "glass", "shopper-1")
    again = search(client, "glass", "shopper-1")
    outside = search(client, "glass", None)

    # then: one list holds both rankings' products, each team's in its own order, both teams'
    # best first, and the same list on the second search
    control = [h.product.pk for h in product_search(query="glass", understand=True, page_size=100).hits]
    candidate = [h.product.pk for h in product_search(query="glass", understand=True, strategy="image").hits]
    shown = [r["id"] for r in first["results"]]
    assert candidate != control  # the experiment compares two different rankings
    assert sorted(shown) == sorted(set(control) | set(candidate)) and first["count"] == len(shown)
    assert set(shown[:2]) == {control[0], candidate[0]}
    assert [r["id"] for r in again["results"]] == shown
    # each shown product is credited to the team that placed it, and the log says the experiment
    event = logged(first["search_id"])
    assert (event.experiment, event.arm) == ("image-only", "interleaved")
    teams = dict(SearchImpression.objects.filter(search=event).values_list("product_id", "team"))
    # (a product both rankings would have placed there is credited to neither: "shared")
    assert {"control", "candidate"} <= set(teams.values()) <= {"control", "candidate", "shared"}
    for team, ranking in (("control", control), ("candidate", candidate)):
        picked = [pid for pid in shown if teams[pid] == team]
        assert picked == sorted(picked, key=ranking.index)
    # the products without a picture, which only the control ranks, are the control's
    assert teams[shop["vase-text-only"]] == teams[shop["lamp-text-only"]] == "control"
    # no session, no sticky arm: the client is outside the experiment and sees the control's list
    assert [r["id"] for r in outside["results"]] == control
    assert logged(outside["search_id"]).experiment == ""


@pytest.mark.parametrize("changes", ["calibration", "weights"])
def test_a_candidate_that_fuses_otherwise_is_interleaved_from_its_own_ranking(client, shop, tmp_path, changes):
    # given: a candidate that fuses the same matches otherwise (and, sharing the control's
    # retrieval, must still rank exactly as a search of its own would)
    from search.retrieval.fusion import FEATURES, Calibration

    if changes == "calibration":  # the image tower's cosine alone
        calibration = Calibration({name: (4.0 if name == "raw_image" else 0.0) for name in FEATURES})
        (tmp_path / "cal.json").write_text(json.dumps(calibration.as_dict()))
        start("fused", "interleave", "--candidate-calibration", str(tmp_path / "cal.json"))
        own = {"calibration": calibration}
    else:
        start("fused", "interleave", "--candidate-weights", "text=0,image=1")
        own = {"weights": {"text": 0.0, "image": 1.0}}

    shown = [r["id"] for r in search(client, "glass", "shopper-1", page_size=100)["results"]]

    control = [r.id for r in product_search(query="glass", understand=True, ranked_only=True).ranked]
    candidate = [r.id for r in product_search(query="glass", understand=True, ranked_only=True, **own).ranked]
    assert candidate != control  # two different rankings
    assert sorted(shown) == sorted(set(control) | set(candidate))
    assert set(shown[:2]) == {control[0], candidate[0]}
    teams = dict(SearchImpression.objects.filter(search__experiment="fused").values_list("product_id", "team"))
    for team, ranking in (("control", control), ("candidate", candidate)):
        picked = [pid for pid in shown if teams[pid] == team]
        assert picked and picked == sorted(picked, key=ranking.index)


def test_interleaving_only_covers_word_searches_in_relevance_order(client, shop):
    start("image-only", "interleave", "--candidate-strategy", "image")
    by_price = search(client, "red mug", "shopper-1", sort="price_asc")
    browse = search(client, "", "shopper-1")
    assert logged(by_price["search_id"]).experiment == "" and logged(browse["search_id"]).experiment == ""


def test_an_ab_split_keeps_each_session_in_one_arm(client, shop):
    start("image-ab", "ab", "--candidate-strategy", "image")
    control = [h.product.pk for h in product_search(query="glass", understand=True).hits]
    candidate = [h.product.pk for h in product_search(query="glass", understand=True, strategy="image").hits]

    arms = {}
    for n in range(24):
        for _ in range(2):
            result = search(client, "glass", f"visit-{n}")
            event = logged(result["search_id"])
            arms.setdefault(n, set()).add(event.arm)
            # each arm shows its own ranking
            assert [r["id"] for r in result["results"]] == (control if event.arm == "control" else candidate)

    assert all(len(seen) == 1 for seen in arms.values())  # sticky: one arm per session
    assert {arm for seen in arms.values() for arm in seen} == {"control", "candidate"}


def test_a_failing_candidate_gives_the_control_list_and_is_counted(client, shop):
    # given: a running experiment whose stored candidate cannot rank (weights for no modality)
    start("broken", "interleave", "--candidate-strategy", "image")
    Experiment.objects.filter(name="broken").update(candidate={"weights": {"sound": 1}})
    from search.selectors.experiments import experiment_forget

    experiment_forget()

    result = search(client, "red mug", "shopper-1")

    expected = [h.product.pk for h in product_search(query="red mug", understand=True).hits]
    assert [r["id"] for r in result["results"]] == expected
    broken = Experiment.objects.get(name="broken")
    assert broken.failures == 1 and "sound" in broken.last_failure


def test_the_storefront_searches_inside_the_experiment_with_the_visit_cookie(client, shop):
    start("image-only", "interleave", "--candidate-strategy", "image")
    client.get("/", {"q": "red mug"})
    client.get("/", {"q": "blue vase"})
    from search.services.events import search_log_flush

    search_log_flush()
    events = list(SearchEvent.objects.filter(channel="page"))
    assert len(events) == 2 and {e.arm for e in events} == {"interleaved"}
    assert len({e.session_hash for e in events}) == 1


def test_simulated_shoppers_find_the_worse_candidate_and_the_report_says_so(tmp_path, shop, capsys, settings):
    # given: labelled queries and a candidate that cannot see products without a picture
    queries = tmp_path / "queries.jsonl"
    queries.write_text("\n".join(json.dumps(q) for q in QUERIES) + "\n")
    start("image-only", "interleave", "--candidate-strategy", "image")
    vocabulary_kept(settings)

    call_command("simulate_shoppers", "--queries", str(queries), "--sessions", "300", "--seed", "5")
    capsys.readouterr()
    call_command("experiment", "report", "image-only", "--json")
    report = json.loads(capsys.readouterr().out)

    assert report["sessions"] == 300 and report["clicks"] > 100
    assert report["winner"] == "control" and report["p_value"] < 0.01
    low, high = report["interval"]
    assert high < 0.5 and report["more_sessions_needed"] == 0
    assert report["decisive_sessions"] < report["sessions"]
    call_command("experiment", "report", "image-only")
    said = capsys.readouterr().out
    assert "Winner: control" in said and f"of the {report['decisive_sessions']} sessions (of 300)" in said


def test_the_admin_shows_experiments_with_their_verdict(admin_client, client, shop):
    start("image-only", "interleave", "--candidate-strategy", "image")
    teams = []
    for n in range(3):
        result = search(client, "glass", f"s{n}")
        # each shopper clicks a product one of the teams placed
        credited = logged(result["search_id"]).impressions.exclude(team="shared").first()
        teams.append(credited.team)
        client.post(
            "/api/clicks",
            {"search_id": result["search_id"], "product_id": credited.product_id},
            content_type="application/json",
            HTTP_X_SESSION_ID=f"s{n}",
        )

    page = admin_client.get("/admin/search/experiment/").content.decode()

    assert "image-only" in page and "strategy image" in page and "Team-draft interleaving" in page
    # the list says the winner in short (none yet, with the sign test's p), the page the whole verdict
    assert "none yet (p = " in page and "Too few sessions to tell" in page
    assert "that preferred a ranking" not in page
    experiment = Experiment.objects.get(name="image-only")
    detail = admin_client.get(f"/admin/search/experiment/{experiment.pk}/change/").content.decode()
    assert "3 sessions (of 3) that preferred a ranking" in detail and "No winner yet" in detail
    # how many sessions preferred each ranking
    for team in ("control", "candidate"):
        assert f"preferred {team}: {teams.count(team)} sessions" in page
    assert "preferred neither: 0 sessions" in page
    assert "manage.py experiment start" in page


def test_the_command_says_what_to_fix(tmp_path, shop):
    with pytest.raises(CommandError, match="not supported yet"):
        start("model", "interleave", "--candidate-model", "openai/clip-vit-base-patch32")
    with pytest.raises(CommandError, match="Say what the candidate changes"):
        start("nothing", "ab")
    with pytest.raises(CommandError, match="use one of"):
        start("bad", "ab", "--candidate-strategy", "best")
    with pytest.raises(CommandError, match="--candidate-weights"):
        start("bad", "ab", "--candidate-weights", "text=x")
    with pytest.raises(CommandError, match="cannot read it"):
        start("bad", "ab", "--candidate-calibration", str(tmp_path / "missing.json"))
    (tmp_path / "old.json").write_text('{"version": 0}')
    with pytest.raises(CommandError, match="fit it again"):
        start("bad", "ab", "--candidate-calibration", str(tmp_path / "old.json"))
    with pytest.raises(CommandError, match="not a usable name"):
        start("Bad Name", "ab", "--candidate-strategy", "rrf")
    with pytest.raises(CommandError, match="at most 64"):
        start("x" * 65, "ab", "--candidate-strategy", "rrf")
    (tmp_path / "notjson.json").write_text("coefficients: 1")
    with pytest.raises(CommandError, match="not JSON; give a fusion calibration"):
        start("bad", "ab", "--candidate-calibration", str(tmp_path / "notjson.json"))
    start("first", "ab", "--candidate-strategy", "rrf")
    with pytest.raises(CommandError, match="'first' is running; stop it first"):
        start("second", "ab", "--candidate-strategy", "rrf")
    with pytest.raises(CommandError, match="has not won"):
        call_command("experiment", "stop", "first", "--promote")
    assert Experiment.objects.get(name="first").status == "running"  # nothing stopped
    with pytest.raises(CommandError, match="--force only goes with --promote"):
        call_command("experiment", "stop", "first", "--force")
    call_command("experiment", "stop", "first")
    with pytest.raises(CommandError, match="exists already"):
        start("first", "ab", "--candidate-strategy", "rrf")
    with pytest.raises(CommandError, match="no experiment named"):
        call_command("experiment", "report", "nobody")
    assert Experiment.objects.get(name="first").status == "stopped"


def test_promoting_weights_says_every_setting_that_serves_what_was_tested(shop, capsys, settings):
    from search.retrieval.fusion import FEATURES, Calibration
    from search.services.calibrating import calibration_save

    # given: a shop that serves a fitted calibration, a candidate fused with other weights, and
    # what that candidate ranked in the experiment
    settings.SEARCH_FUSION_CALIBRATION = "auto"
    calibration_save(Calibration({name: (4.0 if name == "raw_image" else 0.0) for name in FEATURES}))
    start("weights", "ab", "--candidate-weights", "text=1,image=0.2")
    tested = [r.id for r in product_search(query="glass", weights={"text": 1.0, "image": 0.2}, ranked_only=True).ranked]

    call_command("experiment", "stop", "weights", "--promote", "--force")

    # when: the serving processes take the settings the command says
    said = capsys.readouterr().out
    line = next(line for line in said.splitlines() if line.startswith("Set SEARCH_FUSION_WEIGHTS="))
    for assignment in line.removeprefix("Set ").split(" and restart")[0].split():
        name, value = assignment.split("=", 1)
        setattr(settings, name, float(value) if name == "SEARCH_RELEVANCE_THRESHOLD" else value)
    # then: a plain search ranks as the candidate did
    assert [r.id for r in product_search(query="glass", ranked_only=True).ranked] == tested


def test_promoting_a_calibration_keeps_it_for_the_serving_model(tmp_path, shop, capsys, settings):
    from search.retrieval.fusion import FEATURES, Calibration

    settings.SEARCH_FUSION_CALIBRATION = "auto"
    calibration = Calibration(dict.fromkeys(FEATURES, 0.5))
    (tmp_path / "cal.json").write_text(json.dumps(calibration.as_dict()))
    start("cal", "interleave", "--candidate-calibration", str(tmp_path / "cal.json"))

    call_command("experiment", "stop", "cal", "--promote", "--force")

    said = capsys.readouterr().out
    assert "Saved the candidate's fusion calibration" in said
    kept = FusionCalibration.objects.get(model_id=settings.SEARCH_EMBEDDING_MODEL).coefficients
    assert kept["coefficients"] == dict.fromkeys(FEATURES, 0.5)
    experiment = Experiment.objects.get(name="cal")
    assert experiment.status == "stopped" and experiment.promoted


def test_swaps_move_two_adjacent_products_and_never_a_placed_one(client, shop, settings):
    from search.models import RankingRule

    # given: every word search may swap (SEARCH_SWAP_PROBABILITY=1) and a pinned product
    settings.SEARCH_SWAP_PROBABILITY = 1.0
    RankingRule.objects.create(query="glass", action="pin", product_id=shop["red-lamp"], position=1)
    expected = [h.product.pk for h in product_search(query="glass", understand=True).hits]
    swapped = set()
    for n in range(30):
        result = search(client, "glass", f"visit-{n}")
        event = logged(result["search_id"])
        shown = [r["id"] for r in result["results"]]
        assert event.swap_probability == 1.0
        if event.swapped_at is None:
            assert shown == expected
            continue
        # then: exactly the products at k and k + 1 traded places, and the log says k
        k = event.swapped_at
        swapped.add(k)
        assert shown[k - 1 : k + 1] == expected[k - 1 : k + 1][::-1]
        assert shown[: k - 1] == expected[: k - 1] and shown[k + 1 :] == expected[k + 1 :]
        assert [i.product_id for i in event.impressions.all()] == shown
        assert shown[0] == shop["red-lamp"]  # the pinned product stays where its rule put it
    assert swapped and 1 not in swapped
    # a sorted list and browsing are never swapped
    by_price = search(client, "glass", "visit-x", sort="price_asc")
    assert logged(by_price["search_id"]).swapped_at is None


def test_an_interleaving_experiment_measures_the_position_bias_without_any_swap(tmp_path, shop, settings):
    from search.selectors.experiments import position_bias

    # given: no swaps, and simulated shoppers in an interleaving experiment whose rankings put
    # different products first (for this query: the control a lamp without a picture, which
    # the candidate cannot see, the candidate a blue glass vase), both of which these shoppers
    # find good
    settings.SEARCH_SWAP_PROBABILITY = 0.0
    vocabulary_kept(settings)
    start("image-only", "interleave", "--candidate-strategy", "image")
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"query": "blue glass lamp", "relevance": {"lamp-text-only": 3, "blue-vase": 3}}))
    call_command("simulate_shoppers", "--queries", str(queries), "--sessions", "2000", "--seed", "5")

    # then: the coins of its rounds tell how much less shoppers look at position 2 than at 1
    bias = position_bias()
    assert len(bias.values) == 2 and 0.3 < bias.at(2) < 1.0
    assert SearchEvent.objects.filter(swapped_at__isnull=False).count() == 0


def test_swapped_clicks_measure_the_position_bias_that_the_calibration_and_triplets_use(
    tmp_path, shop, capsys, settings
):
    from search.selectors.experiments import position_bias

    # given: simulated shoppers on a shop whose searches may always swap (a pair of the first
    # ten is drawn; this shop's lists are short, so most draws fall past their end: no swap)
    settings.SEARCH_SWAP_PROBABILITY = 1.0
    vocabulary_kept(settings)
    queries = tmp_path / "queries.jsonl"
    queries.write_text("\n".join(json.dumps(q) for q in QUERIES) + "\n")
    call_command("simulate_shoppers", "--queries", str(queries), "--sessions", "2500", "--seed", "5")

    # then: the log tells how much less shoppers look at position 2 than at 1
    bias = position_bias()
    assert len(bias.values) >= 2 and 0.3 < bias.at(2) < 1.0
    # the calibration's click evidence weighs clicks by it: a product's target is its clicks
    # over its impressions, each click counting 1 / the propensity of where it was shown
    from search.services.calibrating import evidence_from_clicks

    evidence = evidence_from_clicks()
    assert evidence.weighed and evidence.click_queries == len(QUERIES)
    assert evidence_from_clicks(weigh=False).weighed is None  # calibrate_fusion --no-weighing, to compare
    targets = [t for products in evidence.labels.values() for t, _ in products.values()]
    assert all(0.0 <= t <= 1.0 for t in targets) and max(targets) > 0
    # the triplets carry each click's propensity, which the fine-tuning weighs rows by
    out = tmp_path / "triplets.jsonl"
    call_command("export_clicks", "--kind", "triplets", "--format", "jsonl", "--out", str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(r["propensity"] == bias.weighing(r["positive_position"]) for r in rows)
    from lab.training.data import triplets_load

    examples = triplets_load(out)
    deep = [e for e in examples if e.weight > 1.0]
    assert deep and all(e.weight <= 10.0 for e in examples)
