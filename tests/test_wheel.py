"""Packaging: ``python -m build`` here, then the wheel and the sdist in fresh virtual environments.

The wheel must bring the compiled core (loaded from the venv, not from this checkout), ship
``py.typed`` and the console script, and pass the suite's smoke tests from the sdist's own
tests; the sdist built with ``DYNAMO_SESSIONS_NO_EXTENSIONS=1`` must give a working
pure-Python package.  The venvs see the packages of the interpreter running the tests (boto3,
msgpack, moto, pytest) so that nothing is downloaded but the build requirements (setuptools,
Cython).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
_IGNORED = shutil.ignore_patterns(
    ".git", "*.so", "*.pyd", "*.c", "*.egg-info", "__pycache__", "build", "dist", ".*_cache",
    ".hypothesis", ".benchmarks", "*.html", ".venv", "venv",
)
SHIPPED_HTML = Path("src/dynamo_sessions/demo/webdemo_tabs.html")


def ARTIFACTS(directory: str, names: list[str]) -> set[str]:
    """What the copy leaves out: build artifacts and stray HTML, not the demo's page."""
    ignored: set[str] = _IGNORED(directory, names)
    if Path(directory).resolve() == (REPO / SHIPPED_HTML).parent:
        ignored.discard(SHIPPED_HTML.name)
    return ignored

CHECK = r"""
import importlib.metadata, json, os, sys
import dynamo_sessions
from dynamo_sessions import _core, SessionConfig, SessionHandler, new_session_id
from dynamo_sessions.testing.servers import local_client
from moto import mock_aws

package = os.path.dirname(dynamo_sessions.__file__)
with mock_aws():  # in-process: nothing leaves the machine
    handler = SessionHandler(SessionConfig(table_name="smoke"), local_client(None))
    handler.create_table()
    session_id = new_session_id()
    handler.write(session_id, {"user": "jeremy", "n": 1})
    round_trip = handler.read(session_id) == {"user": "jeremy", "n": 1}
print(json.dumps({
    "implementation": dynamo_sessions.IMPLEMENTATION,
    "package": package,
    "core_file": getattr(_core.core, "__file__", ""),
    "py_typed": os.path.exists(os.path.join(package, "py.typed")),
    "compiled_files": sorted(f for f in os.listdir(package) if f.startswith("_core_c")),
    "round_trip": round_trip,
    "demo_page": os.path.exists(os.path.join(package, "demo", "webdemo_tabs.html")),
    "pytest_plugin": "dynamo_sessions.testing.plugin" in {
        entry.value for entry in importlib.metadata.entry_points(group="pytest11")},
}))
"""


def _env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME") and not key.startswith("DYNAMO_SESSIONS_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(args: list[str | Path], cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 300) -> str:
    result = subprocess.run([str(arg) for arg in args], cwd=cwd, env=env or _env(),
                            capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def _venv(path: Path) -> Path:
    """A fresh venv that also sees this interpreter's installed packages, after its own.

    Not ``--system-site-packages``: run from inside a virtualenv (the README's ``.venv``), that
    exposes the base interpreter's site-packages, not the active venv's, and msgpack, boto3 and
    pytest are missing.  A ``.pth`` file listing this interpreter's site directories works
    inside a venv and outside one alike.  Its lines are plain paths, so the ``.pth`` files in
    those directories (an editable install of the checkout among them) are not run: the
    package under test comes from the venv.
    """
    _run([sys.executable, "-m", "venv", path], cwd=path.parent)
    python = path / ("Scripts" if os.name == "nt" else "bin") / "python"
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                   cwd=path.parent).strip()
    inherited = [directory for directory in dict.fromkeys(
        [*site.getsitepackages(), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
        if os.path.isdir(directory)]
    (Path(purelib) / "_inherited_site_packages.pth").write_text("\n".join(inherited) + "\n")
    return python


def _check(python: Path, cwd: Path) -> dict[str, object]:
    result: dict[str, object] = json.loads(_run([python, "-c", CHECK], cwd=cwd).splitlines()[-1])
    return result


@pytest.mark.slow
@pytest.mark.dynamodb_local
def test_wheel_and_sdist_install_in_fresh_venvs(tmp_path: Path, dynamodb_local: Any,
                                                table_name: str) -> None:
    project = tmp_path / "project"
    shutil.copytree(REPO, project, ignore=ARTIFACTS)  # leaves this checkout untouched
    dist = tmp_path / "dist"
    # sdist, then the wheel built from the unpacked sdist, in an isolated build environment
    _run([sys.executable, "-m", "build", "--outdir", dist, project], cwd=tmp_path, timeout=600)
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    assert "-cp3" in wheel.name and "none-any" not in wheel.name

    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(tmp_path / "unpacked", **safe)  # type: ignore[arg-type]
    # the compiled core's sources: _core_c.pyx, its header and every .pxi part it includes
    core_sources = ["ext/_core_c.pyx", "ext/_core_c.h", *(
        f"ext/{part.name}" for part in sorted((REPO / "ext").glob("*.pxi")))]
    assert len(core_sources) > 2
    for needed in (*core_sources, "setup.py", "MANIFEST.in", "README.md",
                   "src/dynamo_sessions/py.typed", "tests/conftest.py", "tests/test_core.py"):
        assert needed in names, f"the sdist lacks {needed}"
    assert not any(name.endswith((".so", ".pyd")) for name in names)
    (unpacked,) = (tmp_path / "unpacked").iterdir()

    outside = tmp_path / "elsewhere"  # neither the checkout nor the unpacked sdist
    outside.mkdir()
    python = _venv(tmp_path / "venv-wheel")
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], cwd=outside)
    found = _check(python, outside)
    venv = str((tmp_path / "venv-wheel").resolve())
    assert found["implementation"] == "compiled"
    assert str(found["core_file"]).startswith(venv), found  # from the venv, not the checkout
    assert str(found["package"]).startswith(venv), found
    assert found["py_typed"] and found["round_trip"]
    assert found["demo_page"] and found["pytest_plugin"]  # package data, entry point
    script = python.parent / ("dynamo-sessions.exe" if os.name == "nt" else "dynamo-sessions")
    assert "create-table" in _run([script, "--help"], cwd=outside)
    # the check: create-table, gc and stats from the fresh install, on DynamoDB Local
    local = {**_env(), "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
             "DYNAMO_SESSIONS_ENDPOINT_URL": dynamodb_local.endpoint_url,
             "DYNAMO_SESSIONS_TABLE_NAME": table_name}
    assert "ACTIVE" in _run([script, "create-table"], cwd=outside, env=local)
    assert "deleted 0" in _run([script, "gc"], cwd=outside, env=local)
    assert "no sessions stored" in _run([script, "stats"], cwd=outside, env=local)
    # the suite's smoke tests, from the sdist, inside the installed wheel; a compiled core
    # that fails to load fails them
    # (the selection [tool.cibuildwheel] test-command runs in every CI wheel)
    smoke_env = {**_env(), "DYNAMO_SESSIONS_REQUIRE_EXTENSIONS": "1"}
    tests = unpacked / "tests"
    _run([python, "-m", "pytest", tests / "test_core.py", tests / "test_table_gc.py",
          tests / "test_logging.py", "-m", "not slow and not dynamodb_local", "-q",
          "-p", "no:cacheprovider"], cwd=outside, env=smoke_env)

    python = _venv(tmp_path / "venv-pure")
    # an isolated build, as a user's pip would do it (fetches setuptools and Cython)
    _run([python, "-m", "pip", "install", "--no-deps", "--no-cache-dir", sdist], cwd=outside,
         env={**_env(), "DYNAMO_SESSIONS_NO_EXTENSIONS": "1"})
    found = _check(python, outside)  # run WITHOUT the variable: nothing compiled is installed
    assert found["implementation"] == "python"
    assert found["compiled_files"] == []
    assert str(found["package"]).startswith(str((tmp_path / "venv-pure").resolve()))
    assert found["py_typed"] and found["round_trip"]
