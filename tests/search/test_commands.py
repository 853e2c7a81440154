from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from catalog.models import IndexStatus, Product
from search.retrieval import providers

pytestmark = pytest.mark.django_db


def test_generate_import_and_index_commands_fill_search(tmp_path, index, capsys, django_capture_on_commit_callbacks):
    call_command("generate_catalog", str(tmp_path / "shop"), products=12, seed=2, missing_image=0.25)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("import_catalog", str(tmp_path / "shop" / "catalog.jsonl"))

    assert Product.objects.count() == 12
    assert set(Product.objects.values_list("index_status", flat=True)) == {IndexStatus.INDEXED}
    assert index.count() == 12
    Product.objects.all().mark_pending()

    call_command("index_products", "--dirty")

    out = capsys.readouterr()
    assert "Indexed 0, unchanged 12" in out.out
    assert "index: 100%" in out.err  # the progress bar


def test_index_all_recreate_rebuilds_the_collection(make_product, index, capsys):
    make_product("Red ceramic mug")
    make_product("Blue vase", image=None)
    index.drop()
    call_command("index_products", "--all", "--recreate")
    assert index.count() == 2
    assert "Indexed 2" in capsys.readouterr().out


def test_import_command_exits_non_zero_but_keeps_good_rows(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("sku,title,price\nG1,Good,1\nG2,Bad,abc\n")
    with pytest.raises(CommandError, match="1 row\\(s\\) failed"):
        call_command("import_catalog", str(path))
    assert Product.objects.filter(sku="G1").exists()


def test_check_model_names_the_setting_when_the_model_is_missing(settings, tmp_path):
    settings.SEARCH_EMBEDDING_MODEL = str(tmp_path / "absent")
    providers.get_encoder.cache_clear()
    try:
        with pytest.raises(CommandError, match="SEARCH_EMBEDDING_MODEL"):
            call_command("check_model")
    finally:
        providers.get_encoder.cache_clear()


def test_reconcile_names_the_server_holding_the_embedded_store_instead_of_a_traceback(embedded_store_held):
    with pytest.raises(CommandError, match="open in another process.*Stop the server and run this again"):
        call_command("reconcile_index")
