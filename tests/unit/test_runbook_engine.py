"""The runbook engine: parsing, running in order, stopping at the first failure, the incident log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paydar.model.errors import PaydarError
from paydar.runbooks.engine import available, load, run

BOOK = """# Test incident

## When to use
When testing. More text.

## Inputs
- `NAME`: who.

## Steps
Say hello.

```sh
echo "hello $NAME from $PAYDAR_STATE_DIR"
```

This one fails.

```sh
echo partial; false
echo never
```

```sh
echo never-reached
```

## Roll back
Nothing.

```sh
echo not-a-step
```
"""


@pytest.fixture()
def book(tmp_path: Path) -> Path:
    path = tmp_path / "test-incident.md"
    path.write_text(BOOK)
    return path


def test_steps_are_the_sh_blocks_of_steps_and_verify_only(book: Path) -> None:
    parsed = load(book)
    assert (parsed.title, parsed.inputs, parsed.summary) == ("Test incident", ("NAME",), "When testing.")
    assert [s.title for s in parsed.steps] == ["Say hello.", "This one fails.", ""]
    assert all("not-a-step" not in s.command for s in parsed.steps)


def test_a_failing_step_stops_the_run_and_is_logged(book: Path, tmp_path: Path) -> None:
    shown: list[str] = []
    outcome = run(load(book), state_dir=tmp_path / "state", values={"NAME": "sre"}, confirm=lambda s, n: True,
                  show=shown.append)
    assert not outcome.ok and outcome.failed is not None and outcome.failed["step"] == 2
    assert shown[0].strip() == f"hello sre from {tmp_path / 'state'}" and shown[1].strip() == "partial"
    entries = [json.loads(line) for line in outcome.log.read_text().splitlines()]
    assert [e["event"] for e in entries] == ["start", "step", "step", "end"]
    assert (entries[2]["exit"], entries[-1]["ok"], entries[-1]["failed_step"]) == (1, False, 2)
    assert outcome.log.parent == tmp_path / "state" / "incidents"


def test_a_declined_step_runs_nothing_more(book: Path, tmp_path: Path) -> None:
    outcome = run(load(book), state_dir=tmp_path, values={"NAME": "x"}, confirm=lambda s, n: n < 2,
                  show=lambda _: None)
    assert outcome.stopped and [e["step"] for e in outcome.ran] == [1]


def test_missing_inputs_are_named_before_anything_runs(book: Path, tmp_path: Path) -> None:
    with pytest.raises(PaydarError, match=r"needs NAME: pass --set NAME=\.\.\."):
        run(load(book), state_dir=tmp_path, values={}, confirm=lambda s, n: True, show=lambda _: None)
    assert not (tmp_path / "incidents").exists()


def test_every_shipped_runbook_has_the_sections_an_sre_needs() -> None:
    books = available()
    assert {b.name for b in books} >= {"region-loss", "region-drain-and-return", "ransomware-on-a-node",
                                       "restore-from-vault", "gateway-flood", "compromised-controller-key",
                                       "lying-prober"}
    for b in books:
        assert {"when to use", "decide", "steps", "verify", "roll back", "if a step fails"} <= set(b.sections), b.name
        assert any(s.section == "verify" for s in b.steps), b.name
