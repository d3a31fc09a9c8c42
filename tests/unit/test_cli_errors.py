"""What a new user meets at the command line: a version, times with their own UTC offset,
messages printed as written (never eaten as markup, never folded at 80 columns), every problem
of a file at its line and column with what the file holds, exit codes that tell bad input (2)
from runtime failures (3), and a dry run before anything destructive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from paydar.cli import cli
from paydar.cli.common import Moment

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "national.yaml").read_text()


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


def _validate(tmp_path: Path, text: str) -> Result:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return CliRunner().invoke(cli, ["validate", str(path)])


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_wrong_type_says_what_the_file_holds_and_where(tmp_path: Path) -> None:
    text = EXAMPLE.replace("sync_replicas: 1", "sync_replicas: two", 1)
    answer = _validate(tmp_path, text)
    assert answer.exit_code == 2
    assert (f"services[0].sync_replicas (line {_line_of(text, 'sync_replicas: two')}, column 20): Input should be a "
            "valid integer") in answer.output
    assert "(the file has 'two')" in answer.output


@pytest.mark.parametrize(("written", "read_as"), [("1101", "a number"), ("0101", "a number, and a leading 0 as octal"),
                                                  ("yes", "a boolean")])
def test_an_unquoted_id_gets_a_quote_it_hint(tmp_path: Path, written: str, read_as: str) -> None:
    answer = _validate(tmp_path, EXAMPLE.replace('id: "1101"', f"id: {written}", 1))
    assert answer.exit_code == 2 and f"(the file has '{written}')" in answer.output
    assert f'hint: quote it: id: "{written}" (unquoted, YAML reads {written} as {read_as})' in answer.output


def test_a_semantic_error_has_its_line_and_column(tmp_path: Path) -> None:
    text = EXAMPLE.replace("regions: [tehran, isfahan, mashhad]", "regions: [tehran, isfahan, nowhere]", 1)
    answer = _validate(tmp_path, text)
    line = _line_of(text, "nowhere")
    column = text.splitlines()[line - 1].index("nowhere") + 1
    assert f"services[0] (id '1101').regions[2] (line {line}, column {column}): unknown region 'nowhere'" \
        in answer.output


def test_a_field_error_is_not_followed_by_the_errors_it_would_cause(tmp_path: Path) -> None:
    # A misspelt region name is one problem, not one more per service that lists the region.
    answer = _validate(tmp_path, EXAMPLE.replace("  - name: tehran", "  - name: Tehran", 1))
    assert answer.exit_code == 2 and "1 problem(s)" in answer.output
    assert "unknown region" not in answer.output


def test_a_runtime_failure_exits_3_and_bad_usage_2(tmp_path: Path) -> None:
    runner = CliRunner()
    absent = runner.invoke(cli, ["status", "--state-dir", str(tmp_path / "none")])
    assert absent.exit_code == 3 and "no realization in" in absent.output
    assert runner.invoke(cli, ["status", "--no-such-option"]).exit_code == 2
    assert runner.invoke(cli, ["plan", "--stack", "nope"]).exit_code == 2, "an unknown name is bad input"


@pytest.mark.parametrize("command", [
    ["failover", "promote", "--service", "1101", "--region", "isfahan"],
    ["failover", "fence", "--service", "1101", "--region", "isfahan"],
    ["failover", "drain", "--region", "isfahan"],
    ["restore", "--service", "1101", "--region", "isfahan"],
    ["keys", "rotate", "--component", "controller.isfahan"],
])
def test_destructive_commands_offer_a_dry_run_and_confirmation(command: list[str]) -> None:
    answer = CliRunner().invoke(cli, [*command, "--help"])
    assert answer.exit_code == 0 and "--dry-run" in answer.output and "--yes" in answer.output


def test_a_drill_that_cannot_attach_is_a_runtime_failure(tmp_path: Path) -> None:
    answer = CliRunner().invoke(cli, ["drill", "--attach", "--state-dir", str(tmp_path / "none")])
    assert answer.exit_code == 3 and "attach failed: no realization in" in answer.output
