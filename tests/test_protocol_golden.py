"""Today's store sends the very same requests as the store before the protocol move: every
scenario of ``protocol_golden_scenarios`` compared, request by request, with its golden
transcript (API, parameters, lock-wait sleeps, outcomes)."""

from __future__ import annotations

import json

import pytest

from .protocol_golden_scenarios import MODES, SCENARIOS, golden_path, transcript


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("mode", MODES)
def test_requests_match_the_golden_transcript(mode: str, name: str) -> None:
    golden = json.loads(golden_path(mode).read_text())[name]
    assert transcript(mode, name) == golden
