"""What a new user meets at the command line: a version, times with their own UTC offset, and
messages printed as written (never eaten as markup, never folded at 80 columns)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from paydar.cli import cli
from paydar.cli.common import Moment

ROOT = Path(__file__).resolve().parents[2]


def test_there_is_a_version() -> None:
    answer = CliRunner().invoke(cli, ["--version"])
    assert answer.exit_code == 0 and answer.output.startswith("paydar, version ")


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-01T09:30:00+03:30", datetime(2026, 12, 1, 6, 0, tzinfo=UTC)),
    ("2026-12-01T06:00:00Z", datetime(2026, 12, 1, 6, 0, tzinfo=UTC)),
    ("2026-12-01 06:00:00", datetime(2026, 12, 1, 6, 0, tzinfo=UTC)),
    ("2026-12-01T10:00:00+04:00", datetime(2026, 12, 1, 10, 0, tzinfo=timezone(timedelta(hours=4)))),
])
def test_restore_at_takes_any_utc_offset(text: str, expected: datetime) -> None:
    assert Moment().convert(text, None, None) == expected


def test_a_time_that_is_not_one_says_what_to_write() -> None:
    answer = CliRunner().invoke(cli, ["restore", "--service", "s", "--region", "r", "--at", "yesterday"])
    assert answer.exit_code == 2 and "use ISO 8601 such as 2026-12-01T09:30:00+03:30" in answer.output


def test_a_pattern_in_a_message_is_printed_as_written(tmp_path: Path) -> None:
    example = yaml.safe_load((ROOT / "national.yaml").read_text())
    example["regions"][0]["name"] = "Not A Name!"
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(example))
    answer = CliRunner().invoke(cli, ["validate", str(path)])
    assert answer.exit_code == 2
    assert "[a-z]" in answer.output, "rich would have read the pattern's brackets as markup"
    assert all(len(line) <= 200 for line in answer.output.splitlines())
    assert any(len(line) > 80 for line in answer.output.splitlines()), "not folded at 80 columns"
