"""The architecture's rules, checked on the source: imports flow one way (no cycles, not even inside functions),
nothing outside regimes/ decides by a regime's name, and the README's Layout names every module."""

import ast
import re
from pathlib import Path

from harness import regimes

ROOT = Path(__file__).parent.parent
HARNESS = ROOT / "harness"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the harness modules it imports anywhere in its file (top level or inside functions)."""
    modules = {_module_name(p): p for p in HARNESS.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
                for alias in node.names:  # `from harness.regimes import full` imports the module harness.regimes.full
                    child = f"{node.module}.{alias.name}"
                    found.add(child if child in modules else node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("harness")}
        graph[name] = found - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, if there is any (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep == "harness":  # the package's __init__ (its version) imports nothing of ours
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_even_inside_functions():
    assert _cycle(_imports()) is None, " -> ".join(_cycle(_imports()))


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_nothing_outside_regimes_decides_by_a_regime_name():
    """A quoted registered regime name outside regimes/ is a forgotten branch (cli.py included)."""
    names = "|".join(re.escape(name) for name in regimes.REGISTRY)
    pattern = re.compile(rf"""["']({names})["']""")
    offenders = []
    for path in HARNESS.rglob("*.py"):
        if "regimes" in path.relative_to(HARNESS).parts:
            continue
        offenders += [f"{path.name}:{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1)
                      if pattern.search(line)]
    assert not offenders, offenders


def test_the_readme_layout_names_every_module():
    layout = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("```")[1]
    missing = sorted(str(p.relative_to(HARNESS)) for p in HARNESS.rglob("*.py")
                     if p.name != "__init__.py" and not re.search(rf"\b{re.escape(p.name)}", layout))
    assert not missing, f"README's Layout does not name {missing}"
