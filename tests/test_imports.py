"""No import cycles in lmforge, between modules and between the parts of the tree.

Every `import` statement of src/lmforge is read, including those inside functions (a lazy import
only postpones a cycle). Importing `lmforge.x.y` runs `lmforge/x/__init__.py` first, so it counts
as importing the package `lmforge.x` too, unless the importer lives inside `lmforge.x` (Python
has started that package already). Left out: imports under `if TYPE_CHECKING:` (never run) and
under `if __name__ == "__main__":` (the file run as a script, a program on top of the library).
A second check merges each part of the tree (`lmforge.train`, `lmforge.recipe`, ...) into one node:
`recipe` reading `train.config` while `train.cli` reads `recipe` is a cycle between the two parts.
Run this file as a script to print the cycles: `python tests/test_imports.py`.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "lmforge"


def module_files(src: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, a package named by its __init__.py."""
    out = {}
    for path in sorted((src / ROOT).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _never_imported(node: ast.If) -> bool:
    """`if TYPE_CHECKING:` or `if __name__ == "__main__":`, whose body no import runs."""
    test = node.test
    if isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__":
        return any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """Every module named by an import statement (a `from P import x` names P.x if x is a module)."""
    package = module if is_package else module.rpartition(".")[0]
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _never_imported(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names.extend(f"{base}.{alias.name}" for alias in node.names)
            names.append(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the lmforge modules and packages that importing it runs."""
    files = module_files(src)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        inside = set(_ancestors(module)) | {module}
        edges: set[str] = set()
        for name in _imported_names(ast.parse(path.read_text(encoding="utf-8")), module, is_package):
            if name not in files:
                continue  # an attribute (`from P import f`: its P is listed too) or another library
            edges.update(m for m in [*_ancestors(name), name] if m in files and m not in inside)
        graph[module] = edges
    return graph


def part_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph with each part of the tree (`lmforge.x` and everything under it) as one node."""
    def part(module: str) -> str:
        return ".".join(module.split(".")[:2])

    out: dict[str, set[str]] = {}
    for module, edges in graph.items():
        out.setdefault(part(module), set()).update(part(m) for m in edges if part(m) != part(module))
    return out


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each strongly connected group of modules (Tarjan, then BFS)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_shortest_cycle(graph, group) for group in groups]


def _shortest_cycle(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return sorted(group)


def test_walker_counts_packages_and_lazy_imports(tmp_path):
    pkg = tmp_path / ROOT
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from lmforge.a.one import f\n")
    (pkg / "a" / "one.py").write_text("from lmforge.a import two\ndef f():\n    import lmforge.b\n")
    (pkg / "a" / "two.py").write_text("")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import lmforge.c\n"
                              "from lmforge.a.two import x\n")
    (pkg / "c.py").write_text("from . import b\nif __name__ == '__main__':\n    import lmforge.d\n")
    (pkg / "d.py").write_text("import lmforge.c\n")
    graph = import_graph(tmp_path)
    assert graph["lmforge.a.one"] == {"lmforge.a.two", "lmforge.b"}  # inside lmforge.a: not its __init__
    assert graph["lmforge.b"] == {"lmforge.a", "lmforge.a.two"}  # outside: the package's __init__ runs too
    assert graph["lmforge.c"] == {"lmforge.b"}
    assert find_cycles(graph) == [["lmforge.a", "lmforge.a.one", "lmforge.b", "lmforge.a"]]
    assert find_cycles(part_graph(graph)) == [["lmforge.a", "lmforge.b", "lmforge.a"]]


def _describe(cycles: list[list[str]]) -> str:
    return "import cycles (each line: a imports b imports ... a):\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_import_cycles_between_modules():
    cycles = find_cycles(import_graph())
    assert not cycles, _describe(cycles)


def test_no_import_cycles_between_parts_of_the_tree():
    cycles = find_cycles(part_graph(import_graph()))
    assert not cycles, _describe(cycles)


if __name__ == "__main__":
    graph = import_graph()
    print(_describe(find_cycles(graph) + find_cycles(part_graph(graph))))
