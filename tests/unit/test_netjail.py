"""The network jail's command line: what it runs, and what it refuses to run."""

from __future__ import annotations

import pytest

from paydar.infra.local.netjail import _parse, jailed_command, main


def test_the_jailed_command_forwards_each_port_and_keeps_the_program_argv_intact() -> None:
    argv = jailed_command("/py", [9000, 9001], ["weed", "-x", "--", "mini"])
    assert argv == ["/py", "-m", "paydar.infra.local.netjail", "--forward", "9000", "--forward", "9001",
                    "--", "weed", "-x", "--", "mini"]
    options = _parse(argv[3:])
    assert options.forward == (9000, 9001)
    assert options.command == ("weed", "-x", "--", "mini")


@pytest.mark.parametrize(("argv", "message"), [
    (["--forward", "9000", "--"], "name the program to jail after --"),
    (["--forward", "0", "--", "true"], "ports must be 1-65535"),
    (["--forward", "70000", "--", "true"], "ports must be 1-65535"),
    (["--", "true"], "the following arguments are required: --forward"),
])
def test_bad_command_lines_are_refused_before_anything_is_bound(argv: list[str], message: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main(argv)
    assert refused.value.code == 2
    assert message in capsys.readouterr().err
