"""The package's structure, read from its source: what imports what, and how large the Ray layer's modules are.

How imports are read. Every module of ``torchmate_ray/`` is parsed with ``ast``, and every import statement in
it counts, wherever it stands (at module level, inside a function, under ``if TYPE_CHECKING``): an import that
runs late is still a dependency. Relative imports are resolved against the importing module's package. ``from X
import y`` imports the package's module ``X.y`` if there is one, else ``X``; of another library it imports ``X.y``
(a submodule or a name in ``X``: the checks below go by prefix, ``ray.train`` and all under it, so both read right).

The circle rule. Python runs a package's ``__init__`` before any of its submodules, so ``import a.b.c`` could be
read as importing ``a`` and ``a.b`` as well; every package whose ``__init__`` imports its submodules to export
their names (``torchmate_ray/lightning/__init__.py``) would then be a circle with each of them. That is the usual
layout and harmless while no submodule takes a name from its package's ``__init__``. So an import counts as an
edge to exactly the module it names: ``import a.b.c`` and ``from a.b.c import x`` to ``a.b.c``, ``from a.b import
x`` (``x`` no module) to ``a.b``'s ``__init__``; a submodule that does the latter while the ``__init__`` imports it
is the circle it really is.
"""

from __future__ import annotations

import ast
import functools
import re
import subprocess
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "torchmate_ray"
LIGHTNING, TUNE = f"{PACKAGE}.lightning", f"{PACKAGE}.tune"
MAX_LINES = 300  # a module of the Ray layer above this does more than one job
MAX_FUNCTION_LINES = 40  # a function of the Ray layer above this (its docstring not counted) does more than one step
# The Ray layer's rooms, in their one direction: each may import the rooms before it, never those after.
ROOMS = ("records", "search", "experiment", "trial", "results", "sweep")
APART = {"experiment": "trial", "trial": "experiment"}  # the two rooms of one level, which never import each other
PRIVATE = f"{TUNE}.private"  # the private Ray and CPython APIs: any room but records may import it
HEAVY = ("ray", "lightning", "torch", "torchvision", "torchmetrics", "optuna", "matplotlib", LIGHTNING)
# What only a trial's own process needs (Ray Train, the trial's room): never the results side's.
TRIAL_ROOM = f"{TUNE}.trial"
# The one table of the experiment's file names; a literal name elsewhere in the Ray layer is a second spelling.
FILE_TABLE = ROOT / PACKAGE / "tune" / "records" / "files.py"


@dataclass(frozen=True)
class Import:
    module: str  # the dotted name it imports (see the module docstring)
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_imports(source: str, name: str, is_package: bool, modules: Collection[str]) -> list[Import]:
    """Every import in ``source``, the module ``name`` (a package's ``__init__`` if ``is_package``)."""
    package = name if is_package else name.rpartition(".")[0]
    own = name.partition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                known = submodule in modules or not is_or_under(base, own)
                found.append(Import(submodule if known else base, node.lineno))
    return found


@functools.cache
def package_imports() -> dict[str, list[Import]]:
    """Module name -> its imports, for every module of the package."""
    paths = {module_name(path): path for path in sorted((ROOT / PACKAGE).rglob("*.py"))}
    return {name: read_imports(path.read_text(), name, path.name == "__init__.py", paths)
            for name, path in paths.items()}


def internal_edges(graph: Mapping[str, list[Import]]) -> dict[str, set[str]]:
    return {name: {i.module for i in imports if i.module in graph} for name, imports in graph.items()}


def circle_groups(edges: Mapping[str, Collection[str]]) -> list[set[str]]:
    """The groups of modules that reach each other through their imports (each holds a circle), by first module."""
    reach = {name: reached_from(edges, name) for name in edges}
    groups: list[set[str]] = []
    for name in sorted(edges):
        if name in reach[name] and not any(name in group for group in groups):
            groups.append({other for other in reach[name] if name in reach[other]})
    return groups


def find_circles(edges: Mapping[str, Collection[str]]) -> list[list[str]]:
    """The shortest circle ``[a, b, ..., a]`` from the first module of each group of :func:`circle_groups`."""
    return [shortest_path(edges, min(group), min(group), within=group) for group in circle_groups(edges)]


def reached_from(edges: Mapping[str, Collection[str]], start: str) -> set[str]:
    """The modules that ``start`` imports, directly or through others (itself only through a circle)."""
    reached, frontier = set(), list(edges.get(start, ()))
    while frontier:
        name = frontier.pop()
        if name not in reached:
            reached.add(name)
            frontier += edges.get(name, ())
    return reached


def shortest_path(edges: Mapping[str, Collection[str]], start: str, end: str,
                  within: Collection[str] | None = None) -> list[str]:
    """The fewest imports from ``start`` to ``end`` (``[start, ..., end]``), through ``within`` only if given."""
    paths, frontier = {}, [[start]]
    while frontier:
        path = frontier.pop(0)
        for name in sorted(edges.get(path[-1], ())):
            if name == end:
                return [*path, name]
            if name not in paths and (within is None or name in within):
                paths[name] = [*path, name]
                frontier.append(paths[name])
    raise ValueError(f"{end} is not reached from {start}")


def forbidden_reached(graph: Mapping[str, list[Import]], start: str, forbidden) -> list[str]:
    """How ``start`` reaches, through the package's own imports, an import that ``forbidden(name)`` refuses:
    one line per such import, ``a -> b -> c imports ray (line 3)``."""
    edges = internal_edges(graph)
    found = []
    for name in sorted({start} | reached_from(edges, start)):
        route = " -> ".join([start] if name == start else shortest_path(edges, start, name))
        found += [f"{route} imports {i.module} (line {i.line})" for i in graph[name] if forbidden(i.module)]
    return found


def is_or_under(module: str, *parents: str) -> bool:
    return any(module == parent or module.startswith(parent + ".") for parent in parents)


# --- the checks -----------------------------------------------------------------------------------------------
def test_no_circle_of_imports_between_the_packages_modules():
    edges = internal_edges(package_imports())
    circles = [describe_circle(circle, group) for circle, group in zip(find_circles(edges), circle_groups(edges))]
    assert circles == [], "modules that import each other, directly or through others:\n" + "\n".join(circles)


def describe_circle(circle: list[str], group: set[str]) -> str:
    others = sorted(group - set(circle))
    return " -> ".join(circle) + (f"  (and {', '.join(others)} in the same circle)" if others else "")


@pytest.mark.parametrize("module", [m for m in sorted(package_imports()) if is_or_under(m, LIGHTNING)])
def test_the_lightning_side_imports_neither_the_ray_layer_nor_ray(module):
    imports = forbidden_reached(package_imports(), module, lambda name: is_or_under(name, "ray", TUNE))
    assert imports == [], "\n".join(imports)


def test_the_lightning_side_runs_without_importing_ray(tmp_path):
    """What the imports above cannot see: names resolved at run time (``resolve.py``) and what Lightning, torch and
    torchvision import themselves. A real fit of the tiny config, in a fresh process."""
    code = RAY_FREE.format(tests=str(Path(__file__).parent), root=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "ray imported: False"


RAY_FREE = """
import os, sys
os.environ["TORCHMATE_OFFLINE"] = "1"
sys.path.insert(0, {tests!r})
from conftest import TINY_CONFIG, FAST_TRAINER
from torchmate_ray.lightning import configure_all
import copy
config = copy.deepcopy(TINY_CONFIG)
config["dataset"]["kwargs"]["root"] = {root!r}
trainer, model, data = configure_all(config, {{**FAST_TRAINER, "default_root_dir": {root!r}}})
trainer.fit(model, data)
assert "val/accuracy" in trainer.callback_metrics
print("ray imported:", any(name == "ray" or name.startswith("ray.") for name in sys.modules))
"""


ERRORS = f"{PACKAGE}.errors"


def test_the_config_error_imports_the_standard_library_only():
    """So that every layer imports it at module level, the command line before Ray and Lightning included."""
    imports = [f"line {i.line}: {i.module}" for i in package_imports()[ERRORS]
               if i.module.partition(".")[0] not in sys.stdlib_module_names]
    assert imports == [], "\n".join(imports)


def test_no_module_defers_the_import_of_the_config_error():
    """An import of it inside a function was the sign that it could not be imported without Lightning."""
    deferred = []
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        deferred += [f"{path.relative_to(ROOT)}:{node.lineno}" for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module == ERRORS and id(node) not in top]
    assert deferred == [], "\n".join(deferred)


def test_no_module_of_the_ray_layer_is_above_300_lines():
    sizes = {path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
             for path in sorted((ROOT / PACKAGE / "tune").rglob("*.py"))}
    oversized = [f"{path}: {lines} lines" for path, lines in sizes.items() if lines > MAX_LINES]
    assert oversized == [], f"above {MAX_LINES} lines (split by job):\n" + "\n".join(oversized)


def room_of(module: str) -> str | None:
    """The room (``records``, ``search``, ...) of a module of the Ray layer; None for any other module."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and f"{parts[0]}.{parts[1]}" == TUNE and parts[2] in ROOMS else None


def tune_modules() -> list[str]:
    return [name for name in sorted(package_imports()) if is_or_under(name, TUNE)]


def test_every_module_of_the_ray_layer_is_in_a_room():
    outside = [name for name in tune_modules() if room_of(name) is None and name not in (TUNE, PRIVATE)]
    assert outside == [], f"modules of {TUNE} outside its rooms {ROOMS} (give each a room):\n" + "\n".join(outside)


@pytest.mark.parametrize("module", tune_modules())
def test_a_room_imports_only_the_rooms_before_it(module):
    room = room_of(module)
    allowed = set(ROOMS[:ROOMS.index(room) + 1]) - {APART.get(room)} if room else set()
    wrong = [f"line {i.line}: {i.module} ({room_of(i.module)}/ comes after {room}/)" if room else
             f"line {i.line}: {i.module}" for i in package_imports()[module]
             if room_of(i.module) is not None and room_of(i.module) not in allowed]
    assert wrong == [], f"{module} ({room or 'outside the rooms'}) imports against the direction " \
                        f"{' <- '.join(ROOMS)}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("module", [m for m in tune_modules() if room_of(m) == "records"])
def test_the_records_import_neither_ray_nor_lightning_nor_torch(module):
    imports = forbidden_reached(package_imports(), module,
                                lambda name: is_or_under(name, *HEAVY, PRIVATE))
    assert imports == [], "\n".join(imports)


@pytest.mark.parametrize("module", [m for m in tune_modules() if room_of(m) in ("results", "experiment")])
def test_the_results_and_the_experiment_reach_neither_ray_train_nor_the_trial(module):
    imports = forbidden_reached(package_imports(), module, lambda name: is_or_under(name, "ray.train", TRIAL_ROOM))
    assert imports == [], "\n".join(imports)


def test_the_private_apis_module_imports_the_standard_library_and_ray_only():
    imports = [f"line {i.line}: {i.module}" for i in package_imports()[PRIVATE]
               if i.module.partition(".")[0] not in (*sys.stdlib_module_names, "ray")]
    assert imports == [], "\n".join(imports)


def test_the_packages_init_modules_import_nothing():
    """Each ``__init__`` of the Ray layer is its room's map, a docstring: importing one of its modules imports
    nothing else (the command reads its arguments before Ray and Lightning are imported)."""
    found = [f"{name}: line {i.line}: {i.module}" for name in tune_modules()
             if (ROOT / Path(*name.split("."))).is_dir() for i in package_imports()[name]
             if i.module != "__future__.annotations"]
    assert found == [], "\n".join(found)


def test_no_function_of_the_ray_layer_is_above_40_lines():
    long = []
    for path in sorted((ROOT / PACKAGE / "tune").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and function_lines(node) > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {function_lines(node)} lines")
    assert long == [], f"above {MAX_FUNCTION_LINES} lines, docstring aside (split by step):\n" + "\n".join(long)


def function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's lines from its first statement after the docstring to its end."""
    body = node.body[1:] if ast.get_docstring(node) is not None else node.body
    return node.end_lineno - body[0].lineno + 1 if body else 0


FILE_NAME = re.compile(r"[a-z_*{}][\w.*{}<>-]*\.(json|jsonl|csv|html|ckpt|pkl|txt|png|py|db|yaml|log|pt|pth|npz|npy)(?![.\w])")


def literal_file_names(source: str) -> list[tuple[int, str]]:
    """(line, name) of every string in ``source`` (docstrings aside) that holds a file's name, e.g. ``"summary.json"``
    or the ``params.json`` of ``f"*/params.json"``; a template's ``report.html.j2`` and ``lightning.pytorch`` are
    not names of the experiment's files."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and ast.get_docstring(node) is not None}
    return [(node.lineno, match.group(0)) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            for match in FILE_NAME.finditer(node.value)]


def test_no_file_name_is_spelled_outside_its_table():
    found = [f"{path.relative_to(ROOT)}:{line}: {name!r}" for path in sorted((ROOT / PACKAGE / "tune").rglob("*.py"))
             if path != FILE_TABLE for line, name in literal_file_names(path.read_text())]
    assert found == [], f"file names spelled outside {FILE_TABLE.relative_to(ROOT)} (name them there):\n" + \
                        "\n".join(found)


def test_a_file_name_is_found_in_code_and_not_in_a_docstring():
    source = '"""Writes summary.json."""\npath = directory / "summary.json"\nglob = f"*/params.json"\n' \
             'template = "report.html.j2"\nlogger = "lightning.pytorch"\n'
    assert literal_file_names(source) == [(2, "summary.json"), (3, "params.json")]


# --- the reading of imports and the circle rule, on made-up modules ---------------------------------------------
MODULES = {"pkg", "pkg.a", "pkg.sub", "pkg.sub.b", "pkg.sub.c"}
READ = [
    ("absolute", "import pkg.a, ray.tune", "pkg.sub.b", False, ["pkg.a", "ray.tune"]),
    ("from-a-module-its-submodule", "from pkg.sub import c", "pkg.a", False, ["pkg.sub.c"]),
    ("from-a-package-a-name", "from pkg.sub import helper", "pkg.a", False, ["pkg.sub"]),
    ("relative-sibling", "from . import c", "pkg.sub.b", False, ["pkg.sub.c"]),
    ("relative-parent", "from ..a import x", "pkg.sub.b", False, ["pkg.a"]),
    ("relative-in-an-init", "from .b import x", "pkg.sub", True, ["pkg.sub.b"]),
    ("inside-a-function", "def f():\n    from ray import train\n", "pkg.a", False, ["ray.train"]),
    ("type-checking-only", "if TYPE_CHECKING:\n    from pkg.a import A\n", "pkg.sub.b", False, ["pkg.a"]),
]


@pytest.mark.parametrize("source, name, is_package, expected", [r[1:] for r in READ], ids=[r[0] for r in READ])
def test_imports_are_read_wherever_they_stand(source, name, is_package, expected):
    assert [i.module for i in read_imports(source, name, is_package, MODULES)] == expected


CIRCLES = [
    ("an-init-exporting-its-submodules", {"pkg.sub": {"pkg.sub.b", "pkg.sub.c"}, "pkg.sub.b": {"pkg.sub.c"}}, []),
    ("a-submodule-taking-a-name-from-its-init", {"pkg.sub": {"pkg.sub.b"}, "pkg.sub.b": {"pkg.sub"}},
     [["pkg.sub", "pkg.sub.b", "pkg.sub"]]),
    ("through-a-third-module", {"pkg.a": {"pkg.sub.b"}, "pkg.sub.b": {"pkg.sub.c"}, "pkg.sub.c": {"pkg.a"}},
     [["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]]),
    ("two-apart", {"pkg.a": {"pkg"}, "pkg": {"pkg.a"}, "pkg.sub.b": {"pkg.sub.c"}, "pkg.sub.c": {"pkg.sub.b"}},
     [["pkg", "pkg.a", "pkg"], ["pkg.sub.b", "pkg.sub.c", "pkg.sub.b"]]),
]


@pytest.mark.parametrize("edges, expected", [c[1:] for c in CIRCLES], ids=[c[0] for c in CIRCLES])
def test_circles_are_found(edges, expected):
    assert find_circles(edges) == expected


def test_a_forbidden_import_is_found_through_the_modules_in_between():
    graph = {"pkg.a": [Import("pkg.sub.b", 1)], "pkg.sub.b": [Import("pkg.sub.c", 4)],
             "pkg.sub.c": [Import("torch", 1), Import("ray.train.torch", 9)]}
    assert forbidden_reached(graph, "pkg.a", lambda name: is_or_under(name, "ray")) == [
        "pkg.a -> pkg.sub.b -> pkg.sub.c imports ray.train.torch (line 9)"]


# --- private APIs: through private.py only ------------------------------------------------------------------------
DOCUMENTED = {"os._exit"}  # an underscored name that is the library's documented, public API


def private_uses(source: str) -> list[str]:
    """The underscored attributes ``source`` reads of what it did not define (``x._y`` where no ``self._y``, ``_y =``
    or ``def _y`` of its own says so), the underscored modules it imports, and the private module names it spells."""
    tree = ast.parse(source)
    own = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)}
    own |= {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    own |= {target.id for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                and node.attr not in own and ast.unparse(node) not in DOCUMENTED:
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]
            found += [f"line {node.lineno}: import {name}" for name in names
                      if any(part.startswith("_") and not part.startswith("__") for part in name.split("."))]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "._" in node.value:
            found += [f"line {node.lineno}: {node.value!r}"] if re.fullmatch(r"[\w.]+\._\w[\w.]*", node.value) else []
    return found


def test_private_apis_of_other_libraries_are_used_through_one_module():
    found = [f"{path.relative_to(ROOT)}: {use}" for path in sorted((ROOT / PACKAGE).rglob("*.py"))
             if path != ROOT / Path(*PRIVATE.split(".")).with_suffix(".py") for use in private_uses(path.read_text())]
    assert found == [], f"private APIs used outside {PRIVATE} (give each a function there):\n" + "\n".join(found)


def test_a_private_use_is_found_and_an_own_private_name_is_not():
    source = ("import atexit\nfrom ray._private import services\nclass A:\n    def __init__(self):\n"
              "        self._own = 1\n    def f(self, tuner, other):\n        atexit._run_exitfuncs()\n"
              "        return tuner._local_tuner, other._own, 'ray._private.worker'\n")
    assert private_uses(source) == ["line 2: import ray._private", "line 7: atexit._run_exitfuncs",
                                    "line 8: tuner._local_tuner", "line 8: 'ray._private.worker'"]
