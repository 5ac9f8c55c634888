"""The library's imports run one way: no module imports, directly or through others, a module that
imports it back.

Every ``import`` and ``from ... import`` statement of every module counts, also those inside
functions (a lazy import is still a dependency), in their relative (``from .x import``,
``from . import x``) and absolute (``SAMZeroShotLib.x``) forms.
"""

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "SAMZeroShot" / "SAMZeroShotLib"
PACKAGE = "SAMZeroShotLib"


def module_name(path: Path, library: Path = LIBRARY) -> str:
    """``a.b`` for ``library/a/b.py`` (a package's ``__init__.py`` is the package itself)."""
    parts = list(path.relative_to(library).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imported(node, package: list[str]) -> list[str]:
    """The library modules (dotted, without the package name) an import statement names, some of
    which may be names inside a module rather than modules (the caller keeps the modules)."""
    if isinstance(node, ast.Import):
        return [
            alias.name[len(PACKAGE) + 1 :]
            for alias in node.names
            if alias.name.startswith(PACKAGE + ".")
        ]
    if node.level:
        base = package[: len(package) - (node.level - 1)]
        stem = ".".join(base + ([node.module] if node.module else []))
    elif node.module == PACKAGE or (node.module or "").startswith(PACKAGE + "."):
        stem = node.module[len(PACKAGE) + 1 :]
    else:
        return []
    found = [stem] if stem else []
    return found + [".".join(filter(None, (stem, alias.name))) for alias in node.names]


def import_graph(library: Path = LIBRARY) -> dict[str, set[str]]:
    """``{module: {modules it imports}}`` over every ``.py`` file under ``library``."""
    paths = sorted(library.rglob("*.py"))
    modules = {module_name(path, library): path for path in paths}
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name.split(".") if is_package else name.split(".")[:-1]
        package = [part for part in package if part]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                targets.update(t for t in _imported(node, package) if t in modules)
        targets.discard(name)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None when it has none (depth-first search,
    in sorted order so the answer does not change from run to run)."""
    done, path, on_path = set(), [], set()

    def visit(node):
        path.append(node)
        on_path.add(node)
        for target in sorted(graph.get(node, ())):
            if target in on_path:
                return path[path.index(target) :] + [target]
            if target not in done:
                cycle = visit(target)
                if cycle:
                    return cycle
        on_path.discard(path.pop())
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_library_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 20 and graph["cli"], "the library's modules were not read"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle_and_names_it():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": set(), "c": {"d"}, "d": {"c"}}) == ["c", "d", "c"]


def test_lazy_relative_and_absolute_imports_all_count(tmp_path):
    (tmp_path / "low.py").write_text("from . import high\n", encoding="utf-8")
    (tmp_path / "high.py").write_text(
        "def later():\n    from SAMZeroShotLib.low import thing\n", encoding="utf-8"
    )
    (tmp_path / "other.py").write_text(
        "import SAMZeroShotLib.low\nfrom .high import later\n", encoding="utf-8"
    )
    graph = import_graph(tmp_path)
    assert graph == {"high": {"low"}, "low": {"high"}, "other": {"high", "low"}}
    assert find_cycle(graph) == ["high", "low", "high"]
