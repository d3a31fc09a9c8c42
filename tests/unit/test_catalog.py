"""Reading Chaos Toolkit journals: an experiment holds only when everything in it held."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from paydar.chaos.catalog import RECOVERY_PROBE, _result, experiments
from paydar.chaos.load import Sample
from paydar.drill.report import render_html
from paydar.drill.run import DrillReport, served_during


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


def test_the_html_report_is_self_contained_and_shows_every_figure() -> None:
    broke = _result("rogue", journal(after=False), 2.0, Path("j.json")).as_dict() | {"window": [105.0, 110.0]}
    held = _result("crash", journal(), 3.0, Path("j.json")).as_dict() | {"window": [101.0, 104.0]}
    report = DrillReport(state_dir="s", writes_acknowledged=10, experiments=[held, broke], timeline_origin=100.0,
                         timeline={"tehran": [[0, 1.0], [5, 0.5], [9, 1.0]], "isfahan": [[0, 1.0], [9, 1.0]]})
    page = render_html(report.as_dict())
    assert "FAILED: experiments broke: rogue" in page
    assert page.count("<svg class='timeline'") == 2 and page.count("<title>rogue</title>") == 2
    assert "tehran (lowest 50%)" in page and "route-holds" in page and "1.25s" in page
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")


def test_availability_during_a_fault_counts_only_the_unaffected_regions_within_its_window() -> None:
    attacked = journal()
    attacked["run"].insert(0, {"activity": {"name": "crash", "type": "action"}, "status": "succeeded",
                               "output": {"kind": "crash", "region": "tehran"}})
    result = _result("crash", attacked, 3.0, Path("j.json")).as_dict() | {"window": [10.0, 20.0]}
    assert result["affected_region"] == "tehran"
    samples = [Sample(12.0, "tehran", False), Sample(12.0, "isfahan", True), Sample(13.0, "mashhad", False),
               Sample(14.0, "isfahan", True), Sample(25.0, "mashhad", False)]
    assert served_during(samples, result) == round(2 / 3, 4)
    assert served_during(samples, result | {"window": None}) is None
