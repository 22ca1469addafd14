"""The package's structure, read from its source with `ast`: private TensorFlow/Keras APIs only in
training/tf_private.py, and no import circle among regviz's modules."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "regviz"
FENCE = PACKAGE / "training" / "tf_private.py"  # the one module allowed to reach private TF/Keras APIs
TF_ROOTS = ("tensorflow", "keras")
PRIVATE_MODULES = ("tensorflow.python", "keras.src")  # not part of either library's public API


def module_name(path: Path) -> str:
    """regviz.training.loop for regviz/training/loop.py; regviz.data for regviz/data/__init__.py."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, tuple[Path, ast.Module]]:
    """Every module of the package, parsed."""
    return {module_name(p): (p, ast.parse(p.read_text(), str(p))) for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(node: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, names imported from it) of an import statement; [] for anything else."""
    if isinstance(node, ast.Import):
        return [(alias.name, []) for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [(node.module, [alias.name for alias in node.names])]
    return []


def top_level_imports(tree: ast.Module, lazy: bool = False) -> list[ast.AST]:
    """Import statements run when the module is imported; with lazy, those inside its functions too.
    Never those under `if TYPE_CHECKING:`, which only a type checker runs."""
    found: list[ast.AST] = []

    def visit(node):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not lazy:
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def is_private_module(module: str, names: list[str]) -> bool:
    """True for tensorflow.python..., keras.src... and `from tensorflow import python`."""
    full = [module, *(f"{module}.{name}" for name in names)]
    return any(m == p or m.startswith(p + ".") for m in full for p in PRIVATE_MODULES)


def bound_by_imports(tree: ast.Module, tf: bool) -> set[str]:
    """Names a module binds by importing: from TensorFlow or Keras (tf), or from anything else."""
    bound = set()
    for node in ast.walk(tree):
        for module, _ in imported_modules(node):
            if (module.split(".")[0] in TF_ROOTS) != tf:
                continue
            if isinstance(node, ast.Import):
                bound |= {a.asname or a.name.split(".")[0] for a in node.names}
            else:
                bound |= {a.asname or a.name for a in node.names}
    return bound


def imports_tf_at_top(tree: ast.Module) -> bool:
    """True when importing the module imports TensorFlow or Keras: its objects are handled here."""
    return any(
        m.split(".")[0] in TF_ROOTS for node in top_level_imports(tree) for m, _ in imported_modules(node)
    )


def root(node: ast.AST) -> str | None:
    """The name an attribute chain starts from: `layer` for layer.kernel.regularizer."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def own_attributes(trees) -> set[str]:
    """Attribute names regviz defines itself: set on self or cls, declared in a class, or a method."""
    own = set()
    for tree in trees:
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and root(node) in ("self", "cls")
            ):
                own.add(node.attr)
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        own.add(item.name)
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        own.add(item.target.id)
                    elif isinstance(item, ast.Assign):
                        own |= {t.id for t in item.targets if isinstance(t, ast.Name)}
    return own


def private_uses(path: Path, tree: ast.Module, own: set[str]) -> list[str]:
    """Where a module reaches a private TF/Keras API: imports of tensorflow.python or keras.src, an
    underscore attribute of a TF/Keras module or of an object regviz did not make, and, in a module that
    works on TF/Keras objects, an attribute regviz does not define set on an object (a patch)."""
    where = f"{path.relative_to(REPO)}"
    found = []
    tf_bound, handles_tf = bound_by_imports(tree, tf=True), imports_tf_at_top(tree)
    other_modules = bound_by_imports(tree, tf=False) - tf_bound  # os._exit is not TF's
    for node in ast.walk(tree):
        for module, names in imported_modules(node):
            if is_private_module(module, names):
                found.append(f"{where}:{node.lineno} imports {module} {' '.join(names)}".rstrip())
        if not isinstance(node, ast.Attribute) or root(node) in ("self", "cls", None, *other_modules):
            continue
        name, base = node.attr, root(node)
        private = name.startswith("_") and not name.startswith("__")
        if private and (base in tf_bound or name not in own):
            found.append(f"{where}:{node.lineno} reaches {ast.unparse(node)}")
        elif isinstance(node.ctx, ast.Store) and handles_tf and name not in own:
            found.append(f"{where}:{node.lineno} patches {ast.unparse(node)}")
    return found


def test_private_tf_and_keras_apis_are_fenced_into_tf_private():
    """tensorflow.python, keras.src, private TF/Keras attributes and patched TF/Keras objects appear only in
    regviz/training/tf_private.py."""
    modules = sources()
    own = own_attributes(tree for _, tree in modules.values())
    found = [use for path, tree in modules.values() if path != FENCE for use in private_uses(path, tree, own)]
    assert found == [], "private TensorFlow/Keras API outside training/tf_private.py:\n" + "\n".join(found)


def test_the_check_sees_private_uses():
    """The check above finds each kind of private use it looks for (so a pass means something)."""
    code = (
        "import keras\n"
        "from tensorflow.python.ops import handle_data_util\n"
        "from tensorflow.python.ops.linalg.sparse import sparse_csr_matrix_ops as ops\n"
        "def f(optimizer, layer):\n"
        "    ops._create_handle_data_proto(1, 2)\n"
        "    layer.call = None\n"
        "    return optimizer._velocities\n"
    )
    found = private_uses(PACKAGE / "example.py", ast.parse(code), own={"held"})
    assert len(found) == 5, found
    harmless = (
        "import keras\nimport os\ndef f(run):\n    run.held = 1\n    os._exit(0)\n    return run._state\n"
    )
    assert private_uses(PACKAGE / "example.py", ast.parse(harmless), own={"held", "_state"}) == []


def import_graph(modules: dict[str, tuple[Path, ast.Module]], lazy: bool = False) -> dict[str, set[str]]:
    """Which regviz modules each regviz module imports when it is imported (with lazy: ever)."""
    graph = {}
    for name, (_, tree) in modules.items():
        edges = set()
        for node in top_level_imports(tree, lazy):
            for module, names in imported_modules(node):
                targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules] or [module]
                edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import circle once, as the modules along it (Tarjan's strongly connected components)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_among_regviz_modules():
    """No two regviz modules import each other, directly or round a longer circle, when imported."""
    assert circles(import_graph(sources())) == []


def test_no_circle_through_imports_deferred_into_functions():
    """Nor round an import deferred into a function (store.open_store's of store_postgres was one half
    of a circle whose other half, store_postgres importing store's private codec, ran at import)."""
    assert circles(import_graph(sources(), lazy=True)) == []


def test_the_circle_check_sees_a_circle():
    """The circle finder reports a circle of three and leaves a chain alone."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
