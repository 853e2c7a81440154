"""The keyword leg's words: Qdrant's BM25 terms, SKUs as compared, and typo correction."""

from __future__ import annotations

import pytest

from search.retrieval.keywords import KeywordEncoder, KeywordText, Vocabulary, corrected_query, damerau1, sku_key


@pytest.fixture(scope="module")
def encoder():
    return KeywordEncoder()


@pytest.fixture(scope="module")
def vocabulary(encoder):
    return Vocabulary.from_texts(
        [
            "Red striped mug",
            "Blue striped socks",
            "Table lamp in glass",
            "Canvas backpack",
            "Red canvas backpack",
            "Kestrel",
        ],
        encoder=encoder,
        model_words=["sneakers", "shawl"],
    )


def test_a_sku_compares_without_case_or_separators():
    assert sku_key("S7-00046") == sku_key("s7 00046") == sku_key("S7_00046") == sku_key("s700046") == "s700046"


def test_documents_and_queries_share_stemmed_terms(encoder):
    doc = encoder.document(KeywordText(title="Red striped mugs", sku="S7-00046"))
    query = encoder.query({"mug": 1.0, "stripe": 1.0, "s700046": 1.0})
    assert set(query.indices) <= set(doc.indices)  # plural and singular, and the SKU run together
    assert encoder.term("the") is None  # a stop word has no term


@pytest.mark.parametrize(
    "a, b, one",
    [
        ("mug", "mgu", True),
        ("striped", "stripd", True),
        ("lamp", "lamps", True),
        ("vase", "vzse", True),
        ("mug", "gum", False),
        ("red", "red", False),
    ],
)
def test_damerau_distance_one(a, b, one):
    assert damerau1(a, b) is one


def test_a_word_still_being_typed_is_the_start_of_the_catalogs_words_never_a_correction(encoder):
    vocabulary = Vocabulary.from_texts(
        ["Lumen table lamp", "Kestrel cap", "bum bag", "Red striped mug"], encoder=encoder
    )
    # typed or sent, "lum" is the start of "Lumen", not a typo of "bum": the search reads the same
    for typing in (True, False):
        lum = vocabulary.understand("lum", prefix=typing)
        assert [(w.variants, w.completed, w.corrected) for w in lum] == [(("lumen",), True, False)]
    # a last word that begins nothing is corrected once sent, never while it is being typed
    assert corrected_query(vocabulary.understand("red mgu")) == "red mug"
    assert vocabulary.understand("red mgu", prefix=True)[-1].variants == ()
    assert corrected_query(vocabulary.understand("kest", prefix=True)) == "kestrel"
    assert corrected_query(vocabulary.understand("red str", prefix=True)) == "red striped"  # not "red sar"
    # only the last word is unfinished; the others are read (and corrected) as before
    assert corrected_query(vocabulary.understand("rde lam", prefix=True)) == "red lamp"
    # a single letter is not read yet; a whole word stays itself; a start of nothing is not corrected
    assert [w.typed for w in vocabulary.understand("red s", prefix=True)] == ["red"]
    assert vocabulary.understand("red mug", prefix=True)[-1].variants == ("mug",)
    assert vocabulary.understand("xq", prefix=True)[0].variants == ()
    # a word the model reads but no product holds ("lam" is a word piece) begins catalog words
    # sent as typed: Enter finds what typing showed
    pieces = Vocabulary.from_texts(["Lumen table lamp"], encoder=encoder, model_words={"lam", "table"})
    for typing in (True, False):
        assert corrected_query(pieces.understand("lam", prefix=typing)) == "lamp"


def test_typos_are_corrected_to_the_catalogs_words_then_the_models(vocabulary):
    assert corrected_query(vocabulary.understand("red stripd mgu")) == "red striped mug"
    assert corrected_query(vocabulary.understand("tablelamp")) == "table lamp"  # a space left out
    assert corrected_query(vocabulary.understand("cqnvasbackpack")) == "canvas backpack"  # and a typo
    nseakers = vocabulary.understand("nseakers")[0]
    assert nseakers.variants == ("sneakers",) and not nseakers.in_catalog  # only the model reads it
    # known words are left alone: by stem ("sock" for "socks"), stop words, the model's words
    assert [w.corrected for w in vocabulary.understand("a striped sock for shawl")] == [False] * 5
    assert vocabulary.understand("xqzvvplk")[0].variants == ()  # nothing to correct it to
