"""Reading Chaos Toolkit journals: an experiment holds only when everything in it held."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaos.catalog import RECOVERY_PROBE, _result, experiments
from paydar.drill import DrillReport


def journal(*, before: bool = True, after: bool | None = True, status: str = "completed",
            failed: bool = False) -> dict[str, Any]:
    return {
        "experiment": {"title": "t"}, "status": status, "deviated": after is False,
        "steady_states": {"before": {"steady_state_met": before},
                          "after": None if after is None else {"steady_state_met": after, "probes": [
                              {"activity": {"name": "route-holds"}, "tolerance_met": after}]}},
        "run": [{"activity": {"name": RECOVERY_PROBE}, "status": "succeeded", "output": 1.25},
                {"activity": {"name": "attack"}, "status": "failed" if failed else "succeeded",
                 "exception": ["Traceback", "RuntimeError: no backup\n"]}],
        "rollbacks": [{"activity": {"name": "undo-the-fault"}, "status": "succeeded"}],
    }


def test_a_clean_journal_holds_and_gives_the_recovery_time() -> None:
    result = _result("x", journal(), 3.0, Path("j.json"))
    assert result.held and result.recovery_seconds == 1.25 and result.unmet == ()
    assert _result("x", journal(after=False), 3.0, Path("j.json")).unmet == ("route-holds",)


@pytest.mark.parametrize(("kwargs", "why"), [
    ({"before": False, "after": None}, "steady state before unmet (Chaos Toolkit still says completed)"),
    ({"after": False}, "deviated"),
    ({"failed": True}, "an activity failed"),
    ({"status": "aborted"}, "aborted"),
])
def test_anything_short_of_that_breaks_the_drill(kwargs: dict[str, Any], why: str) -> None:
    result = _result("x", journal(**kwargs), 3.0, Path("j.json"))
    assert not result.held, why
    report = DrillReport(state_dir="s", writes_acknowledged=10, experiments=[result.as_dict()])
    assert not report.passed


def test_the_catalog_ships_with_the_package() -> None:
    assert len(experiments()) >= 8
