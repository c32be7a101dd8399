"""The code's shape: no import cycles, no use of another module's private names.

Every ``import`` and ``from ... import`` in the project's packages counts, at module level or
inside a function: a cycle hidden in a function is still a cycle.
"""

import ast
import os

from conftest import REPO_ROOT

PACKAGES = ("mixmask_tf", "trainers", "export", "benchmarks", "examples")


def _modules():
    """Module name -> (path, is_package) for every .py file of the project's packages."""
    found = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(REPO_ROOT, package)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(folder, name), REPO_ROOT)[:-3].split(os.sep)
                is_package = rel[-1] == "__init__"
                if is_package:
                    rel = rel[:-1]
                found[".".join(rel)] = (os.path.join(folder, name), is_package)
    return found


def _imports(modules):
    """Module -> list of (imported module, names taken from it, line) for project modules only."""
    edges = {}
    for module, (path, is_package) in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        package = module if is_package else module.rpartition(".")[0]
        out = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        out.append((alias.name, (), node.lineno))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:
                        out.append((sub, (), node.lineno))
                    elif target in modules:
                        out.append((target, (alias.name,), node.lineno))
        edges[module] = out
    return edges


def _cycles(graph):
    """Strongly connected components with more than one module (or a self-import): Tarjan."""
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                result.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return result


def test_no_import_cycles():
    modules = _modules()
    assert "mixmask_tf.augment.ops" in modules and "trainers.pretrain" in modules
    edges = _imports(modules)
    graph = {m: sorted({target for target, _, _ in out if target != m}) for m, out in edges.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []


def test_no_module_uses_another_modules_private_names():
    modules = _modules()
    offences = []
    for module, out in _imports(modules).items():
        for target, names, line in out:
            offences += [f"{module}:{line} from {target} import {n}" for n in names if n.startswith("_")]
        path = modules[module][0]
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        # Names bound to project modules: `import a.b as x`, `from a import b (as x)`.
        bound = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules and alias.asname:
                        bound[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in modules:
                        bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in bound and node.attr.startswith("_")
                    and not node.attr.startswith("__") and bound[node.value.id] != module):
                offences.append(f"{module}:{node.lineno} {node.value.id}.{node.attr}")
    assert offences == []


def test_no_two_modules_of_the_library_share_a_name():
    """One module per name in mixmask_tf/ (the ops of a method live in ops/, beside its branch)."""
    names = {}
    for folder, _, files in os.walk(os.path.join(REPO_ROOT, "mixmask_tf")):
        for name in files:
            if name.endswith(".py") and name != "__init__.py":
                names.setdefault(name, []).append(os.path.relpath(os.path.join(folder, name), REPO_ROOT))
    shared = {name: sorted(paths) for name, paths in names.items() if len(paths) > 1}
    assert shared == {}
