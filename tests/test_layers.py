"""The package's floors: every import, at module level or inside a function, goes down (or sideways within
a floor), never up. What the next engineer can rely on when moving code."""

import ast
from pathlib import Path

import squeezenet

ROOT = Path(squeezenet.__file__).parent

#: floor of each top-level module or subpackage; a module may import its own floor and those below
FLOORS = {
    "errors": 0, "common": 0,
    "models": 1,
    "weights": 2, "data": 2,
    "inference": 3, "train": 3, "recipes": 3,
    "compress": 4,
    "deploy": 5,
    "report": 6,
    "demo": 7, "sweep": 7,
    "cli": 8, "__main__": 8, "__init__": 8,
}
#: pairs on one floor that must stay apart all the same
APART = {("weights", "data"), ("data", "weights"), ("inference", "train"), ("train", "inference")}


def _unit(module: str) -> str:
    """``squeezenet.weights.files`` -> ``weights``; the package root is ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    module = ".".join(("squeezenet", *path.relative_to(root).with_suffix("").parts))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    if path.name == "__init__.py":
        module = package
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(line, name) for line, name in found if name == "squeezenet" or name.startswith("squeezenet.")]


def test_every_module_has_a_floor():
    units = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()
             if (p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").exists())}
    assert units <= set(FLOORS), f"give these a floor in FLOORS: {sorted(units - set(FLOORS))}"


def test_no_import_goes_up():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        here = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.stem != "__init__" else "__init__"
        for line, target in _imports(path):
            there = _unit(target)
            if there == here:
                continue
            if FLOORS[there] > FLOORS[here] or (here, there) in APART:
                upward.append(f"{rel}:{line} ({here}, floor {FLOORS[here]}) imports {target} (floor {FLOORS[there]})")
    assert not upward, "imports that go up:\n" + "\n".join(upward)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """The check itself: an import inside a function, written relatively, is found and resolved."""
    root = tmp_path / "squeezenet"
    (root / "models").mkdir(parents=True)
    probe = root / "models" / "probe.py"
    probe.write_text("def f():\n    from ..deploy import onnx\n    from . import registry\n    import squeezenet.cli\n")
    found = _imports(probe, root)
    assert found == [(2, "squeezenet.deploy"), (3, "squeezenet.models.registry"), (4, "squeezenet.cli")]
    assert [_unit(name) for _, name in found] == ["deploy", "models", "cli"]


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(("squeezenet", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def _file_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Which files each file imports (a name imported from a module counts as the module; from a package, as its
    ``__init__``), lazy imports included."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for _, target in _imports(path, root):
            module = target if target in files else target.rsplit(".", 1)[0]
            if module in files and module != name:
                graph[name].add(module)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of files (Tarjan), as the path that closes it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
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
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_no_two_files_import_each_other_even_through_others():
    groups = _cycles(_file_graph())
    assert not groups, "files in an import cycle (move what they share below both):\n" + "\n".join(
        " <-> ".join(g) for g in groups)


def test_the_cycle_check_sees_a_cycle_hidden_in_a_function(tmp_path):
    root = tmp_path / "squeezenet"
    (root / "deploy").mkdir(parents=True)
    (root / "deploy" / "__init__.py").write_text("")
    (root / "deploy" / "a.py").write_text("from .b import f\n")
    (root / "deploy" / "b.py").write_text("def f():\n    from . import c\n")
    (root / "deploy" / "c.py").write_text("def g():\n    from .a import f\n")
    assert _cycles(_file_graph(root)) == [["squeezenet.deploy.a", "squeezenet.deploy.b", "squeezenet.deploy.c"]]
