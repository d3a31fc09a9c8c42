"""`paydar runbook`: executable incident runbooks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from paydar.cli.common import RUNTIME, console, fail, out, state_option
from paydar.model.errors import BadInput, PaydarError

if TYPE_CHECKING:
    from paydar.runbooks.engine import Step

__all__ = ["runbook"]


@click.group()
def runbook() -> None:
    """Executable incident runbooks (runbooks/*.md): list, read, run step by step with an incident log."""


@runbook.command("list")
def runbook_list() -> None:
    """Every runbook and when to use it."""
    from paydar.runbooks.engine import available

    table = Table(show_header=True)
    table.add_column("runbook")
    table.add_column("when to use it")
    for book in available():
        table.add_row(book.name, book.summary)
    out.print(table)


@runbook.command("show")
@click.argument("name")
def runbook_show(name: str) -> None:
    """Print a runbook as Markdown."""
    from rich.markdown import Markdown

    from paydar.runbooks.engine import find

    try:
        out.print(Markdown(find(name).path.read_text(encoding="utf-8")))
    except PaydarError as exc:
        fail(str(exc))


@runbook.command("run")
@click.argument("name")
@state_option
@click.option("--set", "assignments", multiple=True, metavar="NAME=VALUE",
              help="An input the runbook's steps use (see its Inputs section); repeatable.")
@click.option("--yes", is_flag=True, help="Run every step without asking.")
@click.option("--dry-run", is_flag=True, help="Show the steps that would run; run nothing.")
def runbook_run(name: str, state_dir: Path, assignments: tuple[str, ...], yes: bool, dry_run: bool) -> None:
    """Run runbook NAME against the system in --state-dir: each step is shown and (unless --yes)
    confirmed, then run; every step's time, command, exit status and output go to the incident log
    <state-dir>/incidents/. The run stops at the first failing step and says what to do next.

    \b
    Example:
      paydar runbook run region-loss --set REGION=<region>
    """
    from rich.markdown import Markdown

    from paydar.runbooks.engine import find, run

    try:
        book = find(name)
    except PaydarError as exc:
        fail(str(exc))
    values = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--set takes NAME=VALUE, got {item!r}")
        values[key] = value
    out.print(f"[bold]{book.title}[/] ({len(book.steps)} steps)")
    if dry_run:
        for number, step in enumerate(book.steps, 1):
            out.print(f"[bold]step {number}[/] ({step.section}): {step.title}\n  $ {step.command}")
        return

    def confirm(step: Step, number: int) -> bool:
        out.print(f"[bold]step {number}/{len(book.steps)}[/] ({step.section}): {step.title}\n  $ {step.command}")
        return yes or click.confirm("run it?", default=True)

    try:
        outcome = run(book, state_dir=state_dir, values=values, confirm=confirm, show=out.print)
    except BadInput as exc:
        fail(str(exc))
    except PaydarError as exc:
        fail(str(exc), RUNTIME)
    if outcome.failed:
        console.print(f"[bold red]step {outcome.failed['step']} failed[/] (exit {outcome.failed['exit']}); "
                      f"nothing after it ran. Incident log: {outcome.log}")
        for section in ("if a step fails", "roll back"):
            if book.sections.get(section):
                console.print(Markdown(f"## {section.capitalize()}\n{book.sections[section]}"))
        sys.exit(1)
    if outcome.stopped:
        console.print(f"stopped at your request; incident log: {outcome.log}")
        sys.exit(1)
    out.print(f"[bold green]all {len(outcome.ran)} steps succeeded[/]; incident log: {outcome.log}")
