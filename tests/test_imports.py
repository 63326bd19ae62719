"""The package's import graph runs one way: no module imports one that (through others) imports
it back, and no import hides inside a function to break such a circle."""

import ast
from pathlib import Path

import recbole_rag

PACKAGE = Path(recbole_rag.__file__).parent


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree, module):
    """recbole_rag modules a module imports: (name, at module level?)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        top = node in tree.body
        found += [(n, top) for n in names if n.startswith("recbole_rag")]
    return found


def _graph():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph, local = {}, []
    for name, path in modules.items():
        edges = set()
        for target, top in _imports(ast.parse(path.read_text(encoding="utf-8")), name):
            if target not in modules:
                continue
            if not top:
                local.append(f"{name} -> {target}")
            # a package's __init__ importing its own modules is how packages work, not a circle
            if not (path.name == "__init__.py" and target.startswith(name + ".")) and target != "recbole_rag":
                edges.add(target)
        graph[name] = edges
    return graph, local


def test_no_import_circle_and_no_function_local_imports():
    graph, local = _graph()
    assert not local, f"function-local imports: {local}"
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                raise AssertionError("import circle: " + " -> ".join(path[path.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])


# Floors, lowest first: a module imports only modules on its own floor or below (CLI -> quick_start
# -> config/registry -> trainers -> models -> memory/regeneration/semantic -> data/errors/checkpoint).
FLOORS = [
    (
        "recbole_rag.errors",
        "recbole_rag.files",
        "recbole_rag.checkpoint",
        "recbole_rag.compat",
        "recbole_rag.runtime",
        "recbole_rag.process_group",
        "recbole_rag.overrides",
        "recbole_rag.settings_check",
        "recbole_rag.significance",
        "recbole_rag.data",
    ),
    ("recbole_rag.regeneration", "recbole_rag.semantic", "recbole_rag.memory"),
    ("recbole_rag.model",),
    ("recbole_rag.trainer",),
    ("recbole_rag.registry", "recbole_rag.config"),
    (
        "recbole_rag.quick_start",
        "recbole_rag.inference",
        "recbole_rag.distributed",
        "recbole_rag.pipeline",
        "recbole_rag.cli",
        "recbole_rag",
    ),
]


def floor_of(module):
    for floor, prefixes in enumerate(FLOORS):
        if any(module == p or module.startswith(p + ".") for p in prefixes if p != "recbole_rag"):
            return floor
    assert module == "recbole_rag", f"{module} is on no floor: add it to FLOORS"
    return len(FLOORS) - 1


def test_no_module_imports_one_on_a_higher_floor():
    graph, _ = _graph()
    upward = [
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if floor_of(target) > floor_of(module)
    ]
    assert not upward, f"imports of a higher floor: {upward}"
