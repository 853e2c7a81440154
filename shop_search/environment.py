"""The environment variables the project reads, found in its source: what docker-compose.yml and
.env.example may set (tests/test_deploy.py holds them to it, so a misspelt or stale setting
fails CI instead of being silently ignored in production)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# modules that read the environment at start-up: the settings, and gunicorn's configuration
READERS = (ROOT / "settings.py", ROOT / "gunicorn.py")
# helpers of settings.py whose first argument is a variable's name
HELPERS = {"env_bool", "env_choice", "env_float", "env_int", "env_list", "env_locale", "env_seconds", "env_str"}


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isupper():
        return node.value
    return None


def environment_names(paths=READERS) -> set[str]:
    """Every NAME in os.environ.get("NAME"), os.environ["NAME"], "NAME" in os.environ,
    os.getenv("NAME") and the settings' env_* helpers, in these modules."""
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(Path(path).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and node.args:
                func = node.func
                called = func.id if isinstance(func, ast.Name) else ast.unparse(func)
                if called in HELPERS or called in ("os.environ.get", "os.getenv", "os.environ.setdefault"):
                    name = _name(node.args[0])
                    if name:
                        names.add(name)
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                name = _name(node.slice)
                if name:
                    names.add(name)
            elif isinstance(node, ast.Compare) and any(ast.unparse(c) == "os.environ" for c in node.comparators):
                name = _name(node.left)
                if name:
                    names.add(name)
    return names
