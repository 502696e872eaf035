"""The tree tells the architecture, and this keeps it so.

Layers, from the bottom: the core (types, limits, time, errors, routing, compaction and lifecycle
policies, results) → ``store`` → ``service`` / ``cli`` / ``integrations`` / ``tools``. Imports point
down only (the service and the CLI serve the tools over MCP: they may import ``tools``).
Inside ``store``, each concept module keeps its private names to itself, only ``_schema`` reads
rows by position, and no module grows past ``MAX_STORE_MODULE_LINES``. Nothing outside
``store`` imports one of its private ``_*`` modules.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "aisopod_session"
STORE = PACKAGE / "store"
MAX_STORE_MODULE_LINES = 450

CORE = {"_json", "_time", "base", "compaction", "errors", "lifecycle", "limits", "models",
        "results", "routing"}
LAYER = {**dict.fromkeys(CORE, 0), "store": 1, "service": 2, "cli": 2, "integrations": 2,
         "tools": 2, "importers": 2, "__init__": 3, "demo": 4, "__main__": 4, "__version__": 0}
"""Which layer each top-level module or package is in; a module imports only from lower layers
(or its own package; the core's modules import each other). ``service`` and ``cli`` sit side by
side: neither imports the other, except that the CLI's ``serve`` command starts the service;
both serve the session tools (``tools``), which import neither."""
ALLOWED_SIDEWAYS = {("cli", "service"), ("cli", "tools"), ("service", "tools"),
                    ("cli", "importers"), ("importers", "integrations")}
"""The CLI's ``import-from`` runs the importers, which build keys exactly as the integrations do
with the framework-free helpers of ``integrations._common`` (and nothing else of
``integrations``: see ``importer_violations``)."""


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted, under aisopod_session
    target: str  # the imported module, dotted
    names: tuple[str, ...]  # names taken from it (``from target import names``)
    line: int


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = _module_name(path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, (), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "aisopod_session":
            # ``from aisopod_session import _json`` imports a module; ``import SessionStore``,
            # a public name (the package's ``__init__``)
            found += [Import(module, f"aisopod_session.{alias.name}"
                             if (PACKAGE / alias.name).exists()
                             or (PACKAGE / f"{alias.name}.py").exists()
                             or alias.name == "__version__" else "aisopod_session", (),
                             node.lineno)
                      for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = tuple(alias.name for alias in node.names)
            found.append(Import(module, node.module, names, node.lineno))
            # ``from aisopod_session.store import _sessions`` imports a module too
            found += [Import(module, f"{node.module}.{name}", (), node.lineno)
                      for name in names if name.startswith("_") and not name.startswith("__")]
    return found


def all_imports(root: Path = PACKAGE) -> list[Import]:
    return [imp for path in sorted(root.rglob("*.py")) for imp in imports_of(path)]


def _top(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layering_violations(imports: list[Import]) -> list[str]:
    problems = []
    for imp in imports:
        if not imp.target.startswith("aisopod_session"):
            continue
        source, target = _top(imp.module), _top(imp.target)
        if source == target or (source, target) in ALLOWED_SIDEWAYS:
            continue
        below, above = LAYER.get(target, 99), LAYER.get(source, 99)
        if below > above or (below == above and below != 0):  # the core is one layer
            problems.append(f"{imp.module}:{imp.line} imports {imp.target} (a layer that is "
                            f"not below {source})")
    return problems


def private_store_violations(imports: list[Import]) -> list[str]:
    """Outside store/: no store._* module. Inside: no other module's private names."""
    problems = []
    for imp in imports:
        inside = imp.module.startswith("aisopod_session.store")
        if re.match(r"aisopod_session\.store\._", imp.target) and not inside:
            problems.append(f"{imp.module}:{imp.line} imports the private {imp.target}")
        if inside and imp.target.startswith("aisopod_session.store._"):
            private = [name for name in imp.names if name.startswith("_")]
            if private:
                problems.append(f"{imp.module}:{imp.line} takes private {private} from "
                                f"{imp.target}")
    return problems


def private_attribute_violations(path: Path) -> list[str]:
    """``_sessions._helper`` from another store module: a private name reached through the
    module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = {alias.asname or alias.name for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) and node.module == "aisopod_session.store"
               for alias in node.names}
    return [f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id in modules and node.attr.startswith("_")
            and not node.attr.startswith("__")]


def positional_row_violations(path: Path) -> list[str]:
    """Rows of the tables are read by position only in ``_schema``: elsewhere a ``row[i]``
    beyond the first few columns of a statement's own short SELECT is a sign of reading a
    shared column list by position."""
    text = path.read_text(encoding="utf-8")
    return [f"{path.name}: {match.group(0)}"
            for match in re.finditer(r"\brows?\[([3-9]|\d\d+)\]", text)]


def importer_violations(imports: list[Import]) -> list[str]:
    """The importers read other systems' data without their code: from ``integrations`` only
    ``_common`` (no framework behind it), and no framework package at all."""
    frameworks = ("agents", "google", "langchain", "langchain_core", "langchain_community",
                  "sqlalchemy")
    return [f"{imp.module}:{imp.line} imports {imp.target}" for imp in imports
            if imp.module.startswith("aisopod_session.importers")
            and ((imp.target.startswith("aisopod_session.integrations")
                  and imp.target != "aisopod_session.integrations._common")
                 or imp.target.split(".")[0] in frameworks)]


def test_the_importers_use_no_framework() -> None:
    assert importer_violations(all_imports()) == []


def test_imports_point_down_the_layers() -> None:
    assert layering_violations(all_imports()) == []


def test_the_session_tools_sit_beside_the_service_and_the_cli() -> None:
    def imports(module: str, target: str) -> list[str]:
        return layering_violations([Import(module, target, (), 1)])

    assert imports("aisopod_session.service._routes_tools", "aisopod_session.tools") == []
    assert imports("aisopod_session.cli._mcp", "aisopod_session.tools") == []
    assert imports("aisopod_session.tools._tools_async", "aisopod_session.store") == []
    for above in ("aisopod_session.service.app", "aisopod_session.cli",
                  "aisopod_session.integrations.adk", "aisopod_session"):
        assert imports("aisopod_session.tools._tools_async", above) != [], above


def test_nothing_reaches_into_the_store_s_private_modules() -> None:
    problems = private_store_violations(all_imports())
    for path in sorted(STORE.glob("_*.py")):
        problems += private_attribute_violations(path)
    assert problems == []


def test_rows_are_read_by_position_only_where_their_columns_are_defined() -> None:
    problems = [problem for path in sorted(STORE.glob("_*.py")) if path.name != "_schema.py"
                for problem in positional_row_violations(path)]
    assert problems == []


@pytest.mark.parametrize("path", sorted(STORE.glob("*.py")), ids=lambda p: p.name)
def test_store_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_STORE_MODULE_LINES, f"{path.name} has {lines} lines"


def _statements(path: Path) -> str:
    """The module's text with adjacent string literals joined, so a statement split over
    lines reads as one."""
    return re.sub(r"\"\s*\n\s*f?\"", "", path.read_text(encoding="utf-8"))


def test_one_home_for_creating_and_archiving_the_live_session() -> None:
    creates = {path.name for path in STORE.glob("_*.py")
               if re.search(r"INSERT INTO sessions [^;]*'active'", _statements(path))}
    archives = {path.name for path in STORE.glob("_*.py")
                if "SET status = 'archived'" in _statements(path)}
    assert creates == {"_schema.py"}
    assert archives == {"_schema.py"}


# --- the rules themselves can fail -------------------------------------------------------------


def test_the_rules_catch_what_they_are_for(tmp_path: Path) -> None:
    """Each rule flags a module written to break it (so none of the tests above is vacuous)."""
    sideways = [Import("aisopod_session.models", "aisopod_session.store", (), 1),
                Import("aisopod_session.store._sessions", "aisopod_session.service.app", (), 2)]
    assert len(layering_violations(sideways)) == 2
    private = [Import("aisopod_session.service.app", "aisopod_session.store._schema", (), 1),
               Import("aisopod_session.store._sessions", "aisopod_session.store._schema",
                      ("_opt_iso",), 2)]
    assert len(private_store_violations(private)) == 2
    framework = [Import("aisopod_session.importers._adk", "google.adk.sessions", (), 1),
                 Import("aisopod_session.importers._adk", "aisopod_session.integrations.adk",
                        (), 2)]
    assert len(importer_violations(framework)) == 2
    module = tmp_path / "_bad.py"
    module.write_text("from aisopod_session.store import _schema\n"
                      "x = _schema._loads('1')\nvalue = row[15]\n")
    assert len(private_attribute_violations(module)) == 1
    assert len(positional_row_violations(module)) == 1
