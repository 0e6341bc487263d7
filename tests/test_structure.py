"""The house rules of the layout, checked on the code itself: no import cycle anywhere in bot/,
the platform adapters (handlers/ for Slack, feishu/ for Feishu/Lark) and search/ (imports inside
functions and under TYPE_CHECKING count too), no source module over 400 lines, search/ never
imports bot/ or an adapter or Slack, only bot.cli imports an adapter (and no adapter another),
and every package of bot/ imports only what its ``__init__`` docstring allows ("May import: ...")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "handlers", "feishu", "search")
# The platform adapters: only bot.cli imports them, and none imports another.
ADAPTERS = ("handlers", "feishu")
MAX_LINES = 400


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules(root: Path, packages=PACKAGES) -> dict[str, Path]:
    return {module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file. ``from pkg import x`` names the
    submodule ``pkg.x`` when there is one, else ``pkg`` itself."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            # `import a.b.c` imports a.b.c; keep the longest prefix that is a project module.
            parts = target.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            if parts and ".".join(parts) != name:
                out.add(".".join(parts))
    return out


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    modules = source_modules(root, packages)
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def long_modules(root: Path, packages=PACKAGES, limit: int = MAX_LINES) -> dict[str, int]:
    return {str(p.relative_to(root)): n for p in source_modules(root, packages).values()
            if (n := len(p.read_text().splitlines())) > limit}


def allowed_imports(init: Path) -> list[str] | None:
    """The packages listed after "May import:" in a package's docstring (None: no such line;
    ["*"]: "everything")."""
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    m = re.search(r"May import:\s*(.+?)\.(?:\s|$)", doc, re.S)
    if m is None:
        return None
    text = re.sub(r"\([^)]*\)", "", m.group(1))
    if text.strip().startswith("everything"):
        return ["*"]
    return [t.strip().strip("`") for t in re.split(r",|\s+and\s+", text) if t.strip()]


def layering_violations(root: Path) -> list[str]:
    graph = import_graph(root)
    rules = {}
    for init in sorted((root / "bot").glob("*/__init__.py")):
        allowed = allowed_imports(init)
        assert allowed is not None, f"{init.relative_to(root)} says nothing of what it may import"
        rules[module_name(init, root)] = allowed
    bad = []
    for mod, targets in graph.items():
        pkg = next((p for p in rules if mod == p or mod.startswith(p + ".")), None)
        for t in targets:
            adapter = next((a for a in ADAPTERS if t == a or t.startswith(a + ".")), None)
            if adapter is not None and not (mod == adapter or mod.startswith((adapter + ".",
                                                                               "bot.cli"))):
                bad.append(f"{mod} imports {t}: only bot.cli may import {adapter}")
            if pkg is None or rules[pkg] == ["*"] or t == pkg or t.startswith(pkg + "."):
                continue
            if not t.startswith("bot"):
                continue  # search is below every package
            if not any(t == a or t.startswith(a + ".") for a in rules[pkg]):
                bad.append(f"{mod} imports {t}, which {pkg} may not import")
    return bad


# -- the rules, on this checkout ----------------------------------------------------------------


def test_no_import_cycles():
    assert find_cycles(import_graph(ROOT)) == []


def test_no_module_over_400_lines():
    assert long_modules(ROOT) == {}


def test_search_never_imports_bot_handlers_or_slack():
    for name, path in source_modules(ROOT, ("search",)).items():
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        bad = [n for n in names if n.split(".")[0] in ("bot", *ADAPTERS, "slack_bolt", "slack_sdk",
                                                       "lark_oapi")]
        assert bad == [], f"{name} imports {bad}"


def test_every_package_imports_only_what_its_docstring_allows():
    assert layering_violations(ROOT) == []


# -- the checks themselves fail on a planted problem --------------------------------------------


def _plant(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_planted_cycle_is_found_even_through_a_function_level_import(tmp_path):
    _plant(tmp_path, {
        "bot/__init__.py": "",
        "bot/a.py": "from bot.b import thing\n",
        "bot/b.py": "def thing():\n    from bot import a\n    return a\n",
        "bot/c.py": "import bot.a\n",
        "handlers/__init__.py": "", "search/__init__.py": "",
    })
    assert find_cycles(import_graph(tmp_path)) == [["bot.a", "bot.b"]]


def test_a_planted_long_module_is_found(tmp_path):
    _plant(tmp_path, {"bot/__init__.py": "", "bot/long.py": "x = 1\n" * 401,
                      "bot/ok.py": "x = 1\n" * 400, "handlers/__init__.py": "",
                      "search/__init__.py": ""})
    assert long_modules(tmp_path) == {"bot/long.py": 401}


@pytest.mark.parametrize("importer, adapter", [
    ("bot/answer/pipeline.py", "feishu"), ("handlers/app.py", "feishu"),
    ("feishu/bot.py", "handlers"), ("bot/answer/pipeline.py", "handlers")])
def test_only_bot_cli_imports_an_adapter(tmp_path, importer, adapter):
    _plant(tmp_path, {
        "bot/__init__.py": "", "bot/cli/__init__.py": '"""CLI.\n\nMay import: everything.\n"""\n',
        "bot/cli/lark.py": "import feishu.server\nimport handlers.app\n",
        "bot/answer/__init__.py": '"""Answers.\n\nMay import: bot.settings.\n"""\n',
        "handlers/__init__.py": "", "feishu/__init__.py": "", "search/__init__.py": "",
        "feishu/server.py": "", "handlers/app.py": "", "feishu/bot.py": "",
        importer: f"import {adapter}.{'server' if adapter == 'feishu' else 'app'}\n",
    })
    module = importer.removesuffix(".py").replace("/", ".")
    assert layering_violations(tmp_path) == [
        f"{module} imports {adapter}.{'server' if adapter == 'feishu' else 'app'}: only bot.cli "
        f"may import {adapter}"]


def test_a_planted_upward_import_breaks_the_layering(tmp_path):
    _plant(tmp_path, {
        "bot/__init__.py": "",
        "bot/answer/__init__.py": '"""Answers.\n\nMay import: bot.settings, search.\n"""\n',
        "bot/answer/pipeline.py": "from bot.jobs.queue import Job\n",
        "bot/jobs/__init__.py": '"""Jobs.\n\nMay import: bot.answer (types).\n"""\n',
        "bot/jobs/queue.py": "from bot.answer.pipeline import x\n",
        "handlers/__init__.py": "", "search/__init__.py": "",
    })
    assert layering_violations(tmp_path) == [
        "bot.answer.pipeline imports bot.jobs.queue, which bot.answer may not import"]


@pytest.mark.parametrize("doc, allowed", [
    ("Things.\n\nMay import: bot.settings, bot.answer (turns), search.", ["bot.settings", "bot.answer", "search"]),
    ("Things.\n\nMay import: everything in bot.", ["*"]),
])
def test_the_allowed_list_is_read_from_the_docstring(tmp_path, doc, allowed):
    init = tmp_path / "__init__.py"
    init.write_text(f'"""{doc}\n"""\n')
    assert allowed_imports(init) == allowed
