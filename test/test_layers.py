"""The package's layers import only downwards, and no modules import each other in a loop.

Read from the source (every import statement, at the top or inside a function), so the test
needs none of the optional dependencies. From the bottom up:

    core/*.py (errors, files, safe_load, cpus, config_fields)   utilities
    core/geometry/    cameras, poses, objects, PnP, metrics (no torch)
    core/data/        rendering, scenes, augmentation, BOP, synthesis
    core/nets/        networks, codecs, losses, the two methods
    core/inference/   bundles, estimator, ONNX, export, evaluation
    core/tracking/    identities, the SE(3) filter, KLT + PnP between network runs
    core/training/    the training loop
    tools/            the `pose6d` command;  ros/  the node and the bag tool
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'pose6d_ros'
LAYERS = ['core', 'core.geometry', 'core.data', 'core.nets', 'core.inference',
          'core.tracking', 'core.training']


def module_name(path):
    """'pose6d_ros.core.geometry.camera'; a package's __init__.py is the package itself."""
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


class _Imports(ast.NodeVisitor):
    """Every import statement of a module, and whether it runs inside a function."""

    def __init__(self):
        self.found, self._depth = [], 0

    def visit_Import(self, node):
        self.found.append((node, self._depth > 0))

    visit_ImportFrom = visit_Import

    def _function(self, node):
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function


def import_nodes(path, in_functions=None):
    """A file's import statements: all, or those inside (True) / outside (False) functions."""
    visitor = _Imports()
    visitor.visit(ast.parse(path.read_text()))
    return [node for node, inside in visitor.found
            if in_functions is None or inside == in_functions]


def imported_names(node, module=None, is_package=False):
    """Absolute names an import statement reads (`from a import b` gives a and a.b).

    A relative import (`from ..nets import x`) is resolved against `module`, the importer.
    """
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ''
    if node.level:
        if module is None:
            return set()
        package = module.split('.') if is_package else module.split('.')[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = '.'.join(package + ([node.module] if node.module else []))
    return {base} | {f'{base}.{alias.name}' for alias in node.names}


FILES = {module_name(p): p for p in PACKAGE.rglob('*.py')}
PACKAGES = {module_name(p) for p in PACKAGE.rglob('__init__.py')}


def names_of(module, in_functions=None):
    """Every absolute name that `module`'s imports read."""
    return {n for node in import_nodes(FILES[module], in_functions)
            for n in imported_names(node, module, module in PACKAGES)}


# Modules and packages: a package's __init__.py belongs to the layer of its folder.
MODULES = dict(FILES)
GRAPH = {name: {i for i in names_of(name) if i in MODULES and i != name} for name in MODULES}


def layer_of(module):
    """The deepest layer that holds the module ('core.nets'), or None outside the core."""
    inside = [layer for layer in LAYERS
              if module == f'pose6d_ros.{layer}' or module.startswith(f'pose6d_ros.{layer}.')]
    return max(inside, key=LAYERS.index) if inside else None


# `pose6d_ros.core` itself (core/__init__.py) hands on the types users import most, from
# every layer; it is checked for the tools and ros, not for the downward rule.
CORE = sorted(m for m in MODULES if layer_of(m) and m != 'pose6d_ros.core')


def test_the_core_is_split_into_its_layers():
    assert len(CORE) > 40
    for layer in LAYERS[1:]:
        assert sum(layer_of(m) == layer for m in CORE) >= 1, layer


@pytest.mark.parametrize('module', CORE)
def test_a_core_module_imports_only_its_own_layer_and_those_below(module):
    rank = LAYERS.index(layer_of(module))
    for imported in sorted(GRAPH[module]):
        layer = layer_of(imported)
        assert layer is not None, f'{module} imports {imported}, from outside the core'
        assert LAYERS.index(layer) <= rank, (
            f'{module} ({layer_of(module)}) imports {imported} ({layer}): a higher layer')


def test_the_core_never_imports_the_tools_or_ros():
    for module in CORE + ['pose6d_ros.core']:
        names = names_of(module)
        bad = sorted(n for n in names if n.startswith(('pose6d_ros.tools', 'pose6d_ros.ros')))
        assert not bad, f'{module} imports {", ".join(bad)}'


def test_geometry_never_imports_torch_and_loads_nothing_that_does():
    def loads_torch(module, anywhere):
        scope = None if anywhere else False  # at import time: outside functions
        return any(n.split('.')[0] == 'torch' for n in names_of(module, scope))

    for module in (m for m in CORE if layer_of(m) == 'core.geometry'):
        assert not loads_torch(module, anywhere=True), f'{module} imports torch'
        seen, todo = set(), [module]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(GRAPH[current])
        assert not [m for m in seen if loads_torch(m, anywhere=False)], \
            f'{module} loads torch through {sorted(m for m in seen if loads_torch(m, False))}'


def test_the_checks_see_relative_imports_and_packages():
    tree = ast.parse('from ..inference import bundle\nfrom . import pnp\n')
    first, second = tree.body
    assert imported_names(first, 'pose6d_ros.core.nets.corners') == {
        'pose6d_ros.core.inference', 'pose6d_ros.core.inference.bundle'}
    assert 'pose6d_ros.core.geometry.pnp' in imported_names(second, 'pose6d_ros.core.geometry',
                                                            is_package=True)
    assert layer_of('pose6d_ros.core.nets') == 'core.nets'
    assert 'pose6d_ros.core.geometry' in CORE and 'pose6d_ros.core.nets' in CORE


def test_no_modules_import_each_other_in_a_loop():
    state, stack, loops = {}, [], []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 'open':
                loops.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 'done'

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert not loops, ' ; '.join(' -> '.join(loop) for loop in loops)


def _block_above(lines, node):
    """The import statement with the imports, comments and `try:` right above it.

    One reason may cover a group of imports.
    """
    start = node.lineno - 1
    while start > 0:
        above = lines[start - 1].strip()
        if not (above.startswith(('import ', 'from ', '#', 'try:', ')'))
                or above.endswith((',', '('))):
            break
        start -= 1
    return ' '.join(lines[start:node.end_lineno])


def test_imports_sit_at_the_top_unless_deferred_for_a_stated_reason():
    """A function may import what it alone needs, with a comment saying so beside it.

    A heavy or optional package, or a command's modules so that `pose6d --help` starts fast.
    """
    for module, path in MODULES.items():
        lines = path.read_text().split('\n')
        for node in import_nodes(path, in_functions=True):
            name = min(imported_names(node, module, module in PACKAGES), default='')
            assert 'deferred' in _block_above(lines, node), (
                f'{path.relative_to(PACKAGE.parent)}:{node.lineno}: {name} is imported inside '
                'a function; import it at the top, or say why it is deferred ("# deferred: '
                '<reason>")')
