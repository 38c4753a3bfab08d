"""The README's ASGI snippets are the very files the ASGI tests serve (``tests/readme_asgi``):
a change to one without the other fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = sorted((ROOT / "tests" / "readme_asgi").glob("*_example.py"))


def python_blocks(text: str) -> list[str]:
    blocks, inside, lines = [], False, []
    for line in text.splitlines():
        if line.startswith("```"):
            if inside:
                blocks.append("\n".join(lines))
            inside, lines = line == "```python" and not inside, []
            continue
        if inside:
            lines.append(line)
    return blocks


def test_there_are_snippets() -> None:
    assert {path.stem for path in SNIPPETS} == {"fastapi_example", "litestar_example",
                                                "starlette_example"}


@pytest.mark.parametrize("path", SNIPPETS, ids=lambda path: path.stem)
def test_the_readme_shows_the_tested_file(path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    assert path.read_text().rstrip("\n") in python_blocks(readme)
