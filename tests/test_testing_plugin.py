"""The pytest plugin (``dynamo_sessions.testing.plugin``) as a user's suite sees it: a test file
of theirs asks for the fixtures by name and gets a server, a client and a table torn down
after each test."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["pytester"]

PLUGIN = "dynamo_sessions.testing.plugin"

USER_TESTS = '''
from dynamo_sessions import SessionHandler, new_session_id

TABLES = []


def test_a_session_round_trip(moto_sessions_table):
    TABLES.append((moto_sessions_table.client, moto_sessions_table.table_name))
    handler = SessionHandler(moto_sessions_table)
    session_id = new_session_id()
    handler.write(session_id, {"cart": ["tea"]})
    assert handler.read(session_id) == {"cart": ["tea"]}


def test_the_previous_table_was_torn_down(moto_sessions_table):
    client, name = TABLES[0]
    assert name != moto_sessions_table.table_name
    assert name not in moto_sessions_table.client.list_tables()["TableNames"]


def test_dynamodb_local(dynamodb_local_sessions_table, dynamodb_local_client):
    name = dynamodb_local_sessions_table.table_name
    assert name in dynamodb_local_client.list_tables()["TableNames"]
'''


def _plugin_args() -> list[str]:
    """``-p`` the plugin when the installed metadata predates its entry point (an editable
    install made before it was declared); an installed package needs nothing."""
    installed = {entry.value for entry in importlib.metadata.entry_points(group="pytest11")}
    return [] if PLUGIN in installed else ["-p", PLUGIN]


def test_a_users_suite_gets_the_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess(*_plugin_args(), "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("skipped", 0) == 3, result.outlines
    assert outcomes.get("passed", 0) >= 2, result.outlines
    assert "failed" not in outcomes and "error" not in outcomes, result.outlines


def test_requiring_dynamodb_local_turns_its_skip_into_a_failure(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytester.makepyfile(test_user="def test_needs_it(dynamodb_local):\n    pass\n")
    monkeypatch.setenv("DYNAMODB_LOCAL_DIR", str(tmp_path / "empty"))  # no jar there
    monkeypatch.setenv("PATH", str(tmp_path))  # and no npm, no java: it cannot start
    monkeypatch.setenv("DYNAMO_SESSIONS_REQUIRE_DYNAMODB_LOCAL", "1")
    failed = pytester.runpytest_subprocess(*_plugin_args(), "-p", "no:cacheprovider")
    assert failed.parseoutcomes().get("errors", 0) == 1, failed.outlines
    failed.stdout.fnmatch_lines(["*DYNAMO_SESSIONS_REQUIRE_DYNAMODB_LOCAL*"])
    monkeypatch.setenv("DYNAMO_SESSIONS_REQUIRE_DYNAMODB_LOCAL", "0")
    skipped = pytester.runpytest_subprocess(*_plugin_args(), "-p", "no:cacheprovider")
    assert skipped.parseoutcomes() == {"skipped": 1}, skipped.outlines


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    """pytest loads the plugin in every run of a suite that installed the package: it may add
    nothing but itself to what ``import dynamo_sessions`` and pytest load (no boto3, no moto, no
    server module)."""
    code = ("import sys, pytest, dynamo_sessions; before = set(sys.modules); "
            f"import {PLUGIN}; print(sorted(set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == str(["dynamo_sessions.testing", PLUGIN])


def test_the_package_declares_the_entry_point() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["pytest11"] == {PLUGIN: PLUGIN}


def _imports_of_testing(tree: Any, package: str) -> list[tuple[int, bool]]:
    """(line, inside a function) of every import of ``dynamo_sessions.testing`` in a module of
    ``package``."""
    import ast

    found: list[tuple[int, bool]] = []

    def visit(node: Any, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = package.rsplit(".", child.level - 1)[0] if child.level else ""
                module = ".".join(part for part in (base, child.module or "") if part)
                names = [module] + [f"{module}.{alias.name}" for alias in child.names]
            if any(name.startswith("dynamo_sessions.testing") for name in names):
                found.append((child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def test_nothing_at_runtime_imports_the_test_servers() -> None:
    """Only the demo imports ``dynamo_sessions.testing``, and only inside the functions that
    start a local server."""
    import ast

    import dynamo_sessions

    root = Path(dynamo_sessions.__file__).parent
    seen = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[0] == "testing":
            continue
        package = ".".join(("dynamo_sessions", *parts[:-1]))
        found = _imports_of_testing(ast.parse(path.read_text("utf-8")), package)
        if found:
            seen[str(path.relative_to(root))] = found
    assert set(seen) <= {"demo/workload.py", "demo/web.py"}, seen
    assert all(inside for found in seen.values() for _, inside in found), seen
    assert seen, "the scan found not even the demo's import: it is broken"


def test_every_error_class_is_in_the_librarys_tree() -> None:
    """Every public exception class the package defines derives from ``DynamoSessionsError``
    (the test servers', the command line's included) - but ``GcInterrupted``, a
    KeyboardInterrupt so that Ctrl-C keeps its meaning.  Private ones (``_Stopped``) never leave
    their module."""
    import importlib
    import inspect
    import pkgutil

    import dynamo_sessions
    from dynamo_sessions.errors import DynamoSessionsError

    outside = set()
    for module in pkgutil.walk_packages(dynamo_sessions.__path__, "dynamo_sessions."):
        if module.name in ("dynamo_sessions.__main__",  # runs the command line
                           "dynamo_sessions.django"):  # needs Django's settings configured
            continue
        loaded = importlib.import_module(module.name)
        for name, value in vars(loaded).items():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and not name.startswith("_")
                    and value.__module__.startswith("dynamo_sessions")
                    and not issubclass(value, DynamoSessionsError)):
                outside.add(f"{value.__module__}.{name}")
    assert outside == {"dynamo_sessions.ops.gc.GcInterrupted"}
