"""The one-way layout is enforced: lint-imports passes on the tree and fails on each kind of
import that crosses it (pyproject.toml, [tool.importlinter])."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("shop_search", "catalog", "search", "lab")
LINT = Path(sys.executable).with_name("lint-imports")

# (file, import line appended to it, the contract that must break)
CROSSINGS = [
    (
        "catalog/models.py",
        "from search.selectors import product_search",
        "Apps depend one way: the project and the lab on the serving app, the serving app on the catalog",
    ),
    (
        "search/selectors/searching/pipeline.py",
        "from lab.metrics import mean",
        "Apps depend one way: the project and the lab on the serving app, the serving app on the catalog",
    ),
    (
        "search/services/indexing/pipeline.py",
        "from search.web.serializers import SearchParamsSerializer",
        "Inside the serving app imports go down: web and commands, receivers, tasks, services, selectors, "
        "retrieval core",
    ),
    (
        "search/retrieval/providers.py",
        "from catalog.models import Product",
        "The retrieval core knows no catalog, no search log, no lab and no web framework",
    ),
    (
        "search/retrieval/fusion.py",
        "from django.shortcuts import render",
        "The retrieval core imports no Django views, forms, templates, URLs, HTTP or admin",
    ),
    (
        "catalog/signals.py",
        "from catalog.services import product_create",
        "No two modules of a package import each other, even through others",
    ),
]


def lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=300)


def copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree)
    return tree


def broken(output: str) -> set[str]:
    """Contract names that lint-imports reported BROKEN (it wraps long names over lines)."""
    text = " ".join(output.split())
    return {name for _, _, name in CROSSINGS if f"{name} BROKEN" in text}


def test_the_tree_keeps_every_contract():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len({c for _, _, c in CROSSINGS})} kept, 0 broken" in done.stdout


@pytest.mark.parametrize("path, line, contract", CROSSINGS, ids=[c[0] for c in CROSSINGS])
def test_an_import_across_the_layout_fails_with_the_contract_it_breaks(tmp_path, path, line, contract):
    # given: a copy of the project with one import that crosses the layout
    tree = copy_tree(tmp_path)
    assert (tree / path).is_file(), f"{path} is not in the tree: the crossing would test nothing"
    with (tree / path).open("a", encoding="utf-8") as handle:
        handle.write(f"\n{line}  # crossing the layout on purpose\n")

    # when: the contracts are checked
    done = lint(tree)

    # then: it fails, naming that contract (an import that also closes a cycle breaks the
    # acyclic contract too) and the offending module (the cycle report names it relatively)
    assert done.returncode != 0
    assert contract in broken(done.stdout), done.stdout[-3000:]
    module = path.removesuffix(".py").replace("/", ".")
    assert module in done.stdout or f" .{module.rsplit('.', 1)[-1]} -> " in done.stdout, done.stdout[-3000:]


def readme_map() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("\n## Map\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_map_names_only_what_the_tree_has():
    named = set(re.findall(r"`([A-Za-z_][\w./-]*(?:/|\.py|\.yml|Dockerfile))`", readme_map()))
    assert len(named) > 40
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing, f"the README's map names what the tree does not have: {missing}"


def test_every_module_of_the_apps_is_on_the_readme_map():
    # a module is on the map by its path (`search/tasks.py`) or, listed under its folder, by its
    # bare name (`indexing`); commands are mapped by their management folder
    named = set(re.findall(r"`([A-Za-z_][\w./-]*)`", readme_map()))
    unmapped = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if path.name == "__init__.py" or "migrations" in relative.parts:
                continue
            if "management" in relative.parts:
                folder = "/".join(relative.parts[: relative.parts.index("management") + 1]) + "/"
                if folder in named:
                    continue
            if str(relative) in named or path.stem in named:
                continue
            unmapped.append(str(relative))
    assert not unmapped, f"modules the README's map does not show (add them to ## Map): {unmapped}"


def test_no_function_outside_tests_and_benchmarks_runs_past_sixty_lines():
    # a function longer than a screen is read in pieces: name the pieces instead
    import ast

    long = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long, f"functions over 60 lines: {long}"
