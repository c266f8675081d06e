"""Every module imports on its own, first, in a fresh interp: no module works only because another
one happened to be imported before it (an import cycle that a different entry point would hit)."""

import importlib
import pkgutil
import sys

import interp


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(interp.__path__, "interp."):
        if info.name.startswith("interp.backends.") or info.name == "interp.__main__":  # extras; runs the CLI
            continue
        names.append(info.name)
    return sorted(names)


def test_each_module_imports_first():
    failed = {}
    saved = {k: v for k, v in sys.modules.items() if k == "interp" or k.startswith("interp.")}
    try:
        for name in _modules():
            for key in [k for k in sys.modules if k == "interp" or k.startswith("interp.")]:
                del sys.modules[key]
            try:
                importlib.import_module(name)
            except ImportError as e:
                failed[name] = str(e)
    finally:
        for key in [k for k in sys.modules if k == "interp" or k.startswith("interp.")]:
            del sys.modules[key]
        sys.modules.update(saved)
    assert not failed, failed


def _imported(nodes) -> set[str]:
    """The modules these AST nodes import (absolute imports), and ``module.name`` for each name taken
    from a module (it may be a submodule)."""
    import ast

    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def _imports(path, top_level_only: bool) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    return _imported(tree.body if top_level_only else ast.walk(tree))


def test_layers_import_only_downward():
    # run-time steering and serving fold weights through interp.steer.folding and never import
    # interp.export (which writes checkpoints, and imports steer); library modules never import the
    # research organism at module level (it passes its defaults in: HookedModel.planted, .caption_prompt)
    from pathlib import Path

    root = Path(interp.__file__).parent
    for path in [*(root / "steer").glob("*.py"), *(root / "serve").glob("*.py"), root / "evaluate.py"]:
        bad = {m for m in _imports(path, top_level_only=False) if m.startswith("interp.export")}
        assert not bad, f"{path.relative_to(root)} imports {bad}"
    for path in root.rglob("*.py"):  # the test models are for tests, benchmarks and users, never the library
        bad = {m for m in _imports(path, top_level_only=False) if m.startswith("interp.testing")}
        assert path.name == "testing.py" or not bad, f"{path.relative_to(root)} imports {bad}"
    for path in root.rglob("*.py"):
        if "organism" in path.parts:
            continue
        bad = {m for m in _imports(path, top_level_only=True) if m.startswith("interp.organism")}
        assert not bad, f"{path.relative_to(root)} imports {bad} at module level"


def _graph() -> dict[str, set[str]]:
    """Module -> the interp modules it imports, anywhere in its code (in-function imports included:
    a cycle hidden in a function is still a cycle); ``if TYPE_CHECKING:`` blocks and the root package
    (always imported first) are left out."""
    import ast
    from pathlib import Path

    root = Path(interp.__file__).parent
    mods = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
            for n in ast.walk(node)
        }
        targets = _imported(node for node in ast.walk(tree) if id(node) not in typing_only)
        graph[name] = {t for t in targets if t in mods and t not in (name, "interp")}
    return graph


def test_the_import_graph_has_no_cycles():
    graph, seen, on_path = _graph(), set(), []

    def visit(module):  # depth-first; a module met again on the current path closes a cycle
        if module in on_path:
            raise AssertionError("import cycle: " + " -> ".join(on_path[on_path.index(module) :] + [module]))
        if module in seen:
            return
        on_path.append(module)
        for target in sorted(graph[module]):
            visit(target)
        on_path.pop()
        seen.add(module)

    for module in sorted(graph):
        visit(module)


def test_no_module_imports_another_modules_private_names():
    # a helper two modules share is part of the owner's interface: it gets a public name and a docstring
    import ast
    from pathlib import Path

    root = Path(interp.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("interp"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                found += [f"{path.relative_to(root)}: {node.module}.{name}" for name in private]
    assert not found, found
