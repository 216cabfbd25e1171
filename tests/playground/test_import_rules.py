"""The import rules of the Django side, read off the source (beside tests/llmcore/test_framework_free.py):

- only services modules (a `services` package or `services.py`) import `llmcore`; views,
  forms, consumers, tasks and management commands reach it through them;
- no module imports another app's views (shared display helpers live in services);
- no module imports a playground module inside a function: that hides an import cycle instead of
  removing it (the task is passed in, or the shared piece moves to its own module);
- at run time, every routed view names the HTTP methods it takes;
- and no run of statements is written twice in llmcore or playground (one helper instead).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAYGROUND = ROOT / "playground"


def modules() -> list[Path]:
    return sorted(p for p in PLAYGROUND.rglob("*.py") if "migrations" not in p.parts)


def imports(tree: ast.AST) -> Iterator[tuple[ast.stmt, list[str]]]:
    """Each import statement with the modules it may name (`from a import b` may import `a.b`)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield node, [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node, [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]


def is_services(path: Path) -> bool:
    return "services" in path.parts or path.name == "services.py"


def app_of(path: Path) -> str:
    return path.relative_to(PLAYGROUND).parts[0]


def function_local(tree: ast.AST) -> set[ast.stmt]:
    """Import statements inside a function body."""
    inside: set[ast.stmt] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inside |= {n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)}
    return inside


def breaks(rule: str, module: str, path: Path, in_function: bool) -> bool:
    parts = module.split(".")
    if rule == "llmcore":
        return parts[0] == "llmcore" and not is_services(path)
    if rule == "views":
        return parts[0] == "playground" and parts[2:3] == ["views"] and parts[1] != app_of(path)
    return parts[0] == "playground" and in_function  # "cycles"


def violations(rule: str) -> list[str]:
    found = []
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        local = function_local(tree)
        name = str(path.relative_to(ROOT))
        for node, names in imports(tree):
            for module in names:
                if breaks(rule, module, path, node in local):
                    found.append(f"{name}:{node.lineno} imports {module}")
                    break
    return sorted(set(found))


@pytest.mark.parametrize("rule", ["llmcore", "views", "cycles"])
def test_the_import_rules_hold(rule: str) -> None:
    assert violations(rule) == []


def test_the_rules_see_what_they_forbid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each rule catches a module that breaks it (the scan is not vacuous)."""
    app = tmp_path / "playground" / "shop"
    app.mkdir(parents=True)
    (app / "views.py").write_text(
        "from llmcore.sampling import STAGES\n"
        "from playground.jobs.views import report_rows\n"
        "def page():\n"
        "    from playground.jobs.services import jobs\n",
        encoding="utf-8",
    )
    (app / "services.py").write_text("from llmcore.sampling import STAGES\n", encoding="utf-8")
    here = sys.modules[__name__]
    monkeypatch.setattr(here, "PLAYGROUND", tmp_path / "playground")
    monkeypatch.setattr(here, "ROOT", tmp_path)
    assert violations("llmcore") == ["playground/shop/views.py:1 imports llmcore.sampling"]
    assert violations("views") == ["playground/shop/views.py:2 imports playground.jobs.views"]
    assert violations("cycles") == ["playground/shop/views.py:4 imports playground.jobs.services"]


# --- every view names the methods it takes -----------------------------------------------------------
def routed_views() -> list[tuple[str, object]]:
    """(route, view) of every URL pattern of the site's own apps (the admin and auth views are Django's)."""
    from django.urls import URLPattern, URLResolver, get_resolver

    found: list[tuple[str, object]] = []

    def walk(patterns: list[object], prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if getattr(pattern, "app_name", None) == "admin":
                    continue
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                module = getattr(pattern.callback, "__module__", "")
                if module.startswith("playground."):
                    found.append((prefix + str(pattern.pattern), pattern.callback))

    walk(get_resolver().url_patterns, "/")
    return found


@pytest.mark.django_db
def test_every_view_refuses_a_method_it_does_not_take(admin_client) -> None:
    """A PUT reaches no view's body: each is wrapped by require_GET / require_POST / require_http_methods
    (or answers 405 itself, as the JSON APIs do), so a GET handler never runs for a POST or the reverse."""
    import re as regex

    views = routed_views()
    assert len(views) > 40
    accepted = []
    for route, _ in views:
        url = regex.sub(r"<int:[a-z_]+>", "1", regex.sub(r"<str:[a-z_]+>", "x", route))
        response = admin_client.put(url)
        if response.status_code != 405:
            accepted.append(f"{route}: {response.status_code}")
    assert accepted == []


# --- no logic written twice -----------------------------------------------------------------------------
WINDOW = 3  # consecutive statements
MIN_NODES = 40  # in the window's syntax tree: below this, a repeat is a common idiom rather than logic


def statement_runs(path: Path) -> Iterator[tuple[str, int]]:
    """Each run of WINDOW consecutive statements of a block (docstrings left out) big enough to be logic,
    as its syntax tree's dump (names and values kept: an exact repeat) with its first line."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef):
            continue  # declarations: fields, settings, URL patterns
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if not isinstance(block, list):
                continue
            block = [s for s in block if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            for i in range(len(block) - WINDOW + 1):
                run = block[i : i + WINDOW]
                if sum(1 for s in run for _ in ast.walk(s)) >= MIN_NODES:
                    yield "\n".join(ast.dump(s) for s in run), run[0].lineno


def test_no_logic_is_written_twice() -> None:
    """Outside migrations and tests, no run of three statements of real size stands in two places in
    llmcore or playground: the second place calls the first (one helper, in the layer that owns it)."""
    seen: dict[str, list[str]] = {}
    for package in ("llmcore", "playground"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for dump, line in statement_runs(path):
                seen.setdefault(dump, []).append(f"{path.relative_to(ROOT)}:{line}")
    repeated = sorted(places for places in seen.values() if len(places) > 1)
    assert repeated == []
