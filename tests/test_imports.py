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
