"""The layers of ARCHITECTURE.md, enforced: imports point down, test servers stay out of the
runtime, every module has a layer, and no module outgrows one screenful of design (~400 lines).

The import graph is read from the sources (``ast``), not by importing them, so an import inside
a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dynamo_sessions"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # lowest first; a module may import its own layer and the ones before it
    ("core", ("errors", "_rules", "_core_py", "_codec_py", "_units_py", "_backoff_py",
              "_core_c", "_core")),
    ("base", ("config", "metrics", "clock", "merge", "protocol.steps", "transport.translate",
              "transport.client")),
    ("protocol", ("protocol", "protocol.*")),
    ("transport", ("transport", "transport.*", "lease")),
    ("store", ("store", "aio_store", "aio_blocking")),
    ("request", ("request", "_mapping", "_request_async")),
    ("operations", ("ops", "ops.*", "table", "stats")),
    ("handler", ("handler",)),
    ("web", ("web", "web.*")),
    ("adapters", ("wsgi", "flask", "django", "django_backend", "asgi_session", "asgi",
                  "quart")),
    ("public", ("__init__",)),
    ("testing", ("testing", "testing.*")),
    ("demo", ("demo", "demo.*")),
    ("command line", ("cli", "cli.*", "cli_config", "__main__")),
]
"""Module names relative to the package, as patterns; the first match decides."""
MAX_LINES = 400
MAY_IMPORT_TESTING = ("demo", "testing")
"""Layers allowed to import ``dynamo_sessions.testing`` (the demo starts a local moto server)."""


EXT = PACKAGE.parents[1] / "ext"
"""The compiled core's sources: ``_core_c.pyx`` and the ``.pxi`` parts it includes."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    pyx = EXT / "_core_c.pyx"
    if pyx.exists():
        found["_core_c"] = pyx
    return found


def files_of(path: Path) -> list[Path]:
    """A module's source files: itself and, for Cython, the files it ``include``s (in order,
    recursively), which compile into the same module."""
    if path.suffix not in (".pyx", ".pxi"):
        return [path]
    found = [path]
    for name in re.findall(r'^include\s+"([^"]+)"', path.read_text(), re.MULTILINE):
        found += files_of(path.parent / name)
    return found


def layer_of(module: str) -> int:
    for index, (_name, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns):
            return index
    raise LookupError(module)


def imports_of(module: str, path: Path) -> set[str]:
    """The package's own modules that ``module`` imports (relative and absolute)."""
    if path.suffix == ".pyx":  # Cython: only its Python-level ``from X import`` heads count,
        # in the .pyx and in every .pxi part it includes (they are the same module)
        heads = [head for part in files_of(path) for head in re.findall(
            r"^from\s+([.\w]+)\s+import\b", part.read_text(), re.MULTILINE)]
        source = "\n".join(f"from {head} import _" for head in heads)
    else:
        source = path.read_text()
    tree = ast.parse(source)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    known = modules()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("dynamo_sessions"):
                target = node.module.removeprefix("dynamo_sessions").lstrip(".")
            else:
                continue
            for alias in node.names:
                child = f"{target}.{alias.name}" if target else alias.name
                found.add(child if child in known else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dynamo_sessions."):
                    found.add(alias.name.removeprefix("dynamo_sessions."))
    found.discard("")
    found.discard(module)
    return {name for name in found if name in known}


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for module in modules():
        try:
            layer_of(module)
        except LookupError:
            unplaced.append(module)
    assert unplaced == [], f"give these modules a layer in ARCHITECTURE.md and here: {unplaced}"


def test_imports_point_down() -> None:
    upward = []
    for module, path in sorted(modules().items()):
        own = layer_of(module)
        for target in sorted(imports_of(module, path)):
            if layer_of(target) > own:
                upward.append(f"{module} ({LAYERS[own][0]}) imports {target} "
                              f"({LAYERS[layer_of(target)][0]})")
    assert upward == []


def test_runtime_never_imports_the_test_servers() -> None:
    offenders = [
        module for module, path in modules().items()
        if LAYERS[layer_of(module)][0] not in MAY_IMPORT_TESTING
        and any(t == "testing" or t.startswith("testing.") for t in imports_of(module, path))
    ]
    assert offenders == []


def _source_files() -> list[tuple[str, Path]]:
    return [(module, part) for module, path in sorted(modules().items())
            for part in files_of(path)]


def _source_id(module: str, part: Path) -> str:
    """``layer:module``, and the file for a module of several (``core:_core_c/_units.pxi``)."""
    try:
        own = f"{LAYERS[layer_of(module)][0]}:{module}"
    except LookupError:  # test_every_module_has_a_layer names it
        own = f"unplaced:{module}"
    return own if part == modules()[module] else f"{own}/{part.name}"


@pytest.mark.parametrize(("module", "part"),
                         [pytest.param(m, p, id=_source_id(m, p)) for m, p in _source_files()])
def test_module_size(module: str, part: Path) -> None:
    """Every source file, each part of a Cython module (its ``include``d .pxi files) too."""
    lines = len(part.read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} ({part.name}) has {lines} lines: split it along its parts"


def test_core_c_parts_are_read(tmp_path: Path) -> None:
    """Every .pxi in ext/ is a part of ``_core_c`` (included by it, so its size is checked), and
    an import in a part counts as an import of ``_core_c``."""
    pyx = EXT / "_core_c.pyx"
    parts = files_of(pyx)
    assert sorted(EXT.glob("*.pxi")) == sorted(parts[1:]) != []
    (tmp_path / "_core_c.pyx").write_text('from dynamo_sessions.errors import CorruptSession\n'
                                          'include "_part.pxi"\n')
    (tmp_path / "_part.pxi").write_text("from dynamo_sessions.store import SessionStore\n")
    assert imports_of("_core_c", tmp_path / "_core_c.pyx") == {"errors", "store"}
    assert layer_of("store") > layer_of("_core_c")  # so test_imports_point_down would fail


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The graph reader finds relative imports (the direction test would pass vacuously if it
    read none)."""
    found = imports_of("store", PACKAGE / "store.py")
    assert "config" in found or any(name.startswith("protocol") for name in found)
    assert layer_of("cli") > layer_of("store") > layer_of("protocol") > layer_of("_core")
