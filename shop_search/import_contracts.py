"""An import-linter contract type for parts of an external package (`django.forms`).

import-linter keeps each external package as one node of its graph (`django`), so its own
`forbidden` contract can forbid Django as a whole but not Django's views, forms or templates
alone. This contract reads the import statements that the graph records for each direct import
of such a package and matches the full module names in them. Used by pyproject.toml's
[tool.importlinter]; only `lint-imports` (a dev dependency) imports this module.
"""

from __future__ import annotations

import re

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck
from importlinter.domain.helpers import module_expressions_to_modules

_FROM = re.compile(r"^\s*from\s+([\w.]+)\s+import\s+\(?\s*(.*)$")
_IMPORT = re.compile(r"^\s*import\s+(.*)$")


def imported_names(statement: str) -> set[str]:
    """Every module an import statement may name: `from a.b import c, d` gives a.b, a.b.c and
    a.b.d (c may be a submodule); `import a.b as x, c` gives a.b and c."""
    if match := _FROM.match(statement):
        base = match.group(1)
        names = [part.split(" as ")[0].strip(" ()\\") for part in match.group(2).split(",")]
        return {base} | {f"{base}.{name}" for name in names if name and name != "*"}
    if match := _IMPORT.match(statement):
        return {part.split(" as ")[0].strip() for part in match.group(1).split(",") if part.strip()}
    return set()


def _is_within(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


class ForbiddenExternalSubmodulesContract(Contract):
    """Source modules (and their descendants) do not directly import these parts of external
    packages, e.g. django.forms, django.template, django.views.

    Configuration options:
        - source_modules: the modules that must not import them.
        - forbidden_modules: full dotted names inside external packages.
    """

    type_name = "forbidden_external_submodules"

    source_modules = fields.SetField(subfield=fields.ModuleExpressionField())
    forbidden_modules = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        forbidden = [str(m) for m in self.forbidden_modules]  # type: ignore[attr-defined]
        roots = {name.split(".")[0] for name in forbidden}
        violations = []
        for source in sorted(
            module_expressions_to_modules(graph, self.source_modules),  # type: ignore[attr-defined]
            key=lambda m: m.name,
        ):
            for importer in sorted({source.name} | graph.find_descendants(source.name)):
                for root in sorted(roots & graph.find_modules_directly_imported_by(importer)):
                    for detail in graph.get_import_details(importer=importer, imported=root):
                        names = imported_names(detail["line_contents"])
                        hit = next((f for f in forbidden if any(_is_within(n, f) for n in names)), None)
                        if hit:
                            violations.append(
                                {
                                    "importer": importer,
                                    "forbidden": hit,
                                    "line_number": detail["line_number"],
                                    "line_contents": detail["line_contents"].strip(),
                                }
                            )
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for v in check.metadata["violations"]:
            output.print_error(f"{v['importer']} is not allowed to import {v['forbidden']}:")
            output.new_line()
            output.print_error(f"-   {v['importer']} (l.{v['line_number']}): {v['line_contents']}", bold=False)
            output.new_line()
