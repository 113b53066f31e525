"""The kit's module graph: no import cycle (counting imports inside functions,
which is where cycles hide), results that read records and never servers,
and target names parsed in one place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent / "conformance"


def _module(path: Path) -> str:
    rel = path.relative_to(KIT.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """Each kit module and the kit modules it imports, anywhere in its body."""
    modules = {_module(p): p for p in KIT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _without_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's __init__ that only re-exports its modules is not a cycle of its own."""
    return {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}


def test_the_kit_has_no_import_cycle() -> None:
    cycle = _cycle(_without_packages(_graph()))
    assert cycle is None, " -> ".join(cycle or [])


def test_results_read_records_never_servers() -> None:
    deps = _graph()["conformance.results"]
    assert not {d for d in deps if d.startswith(("conformance.targets", "conformance.plugin"))}, deps


def test_target_names_are_parsed_only_by_the_targets_package() -> None:
    """``pgNN`` parsing and ``"local"`` comparisons live in conformance/targets/ only."""
    parsing = re.compile(r'removeprefix\("pg"\)|startswith\("pg"\)|[!=]= "local"|"local" (not )?in ')
    found = [
        f"{p.relative_to(KIT.parent)}:{i}: {line.strip()}"
        for p in KIT.rglob("*.py")
        if "targets" not in p.relative_to(KIT).parts
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if parsing.search(line)
    ]
    assert not found, "\n".join(found)
