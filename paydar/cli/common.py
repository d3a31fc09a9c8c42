"""What every `paydar` command shares: the consoles, the common options, failing with an exit
code, running an operator action against a realization, and rendering figures and progress.

Exit codes: 0 healthy / done; 1 an invariant or health check failed, or an action was refused;
2 bad usage or input (options, a topology file, an unknown service or region); 3 a runtime
failure: the system, or something it depends on, could not do what was asked (not running,
not starting, the vault not answering).
Progress and logs go to stderr; `--json` output goes to stdout.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from paydar.model.errors import BadInput, PaydarError, TopologyError

if TYPE_CHECKING:
    from paydar.infra.local.realizer import Realization

__all__ = ["DEFAULT_CONFIG", "DEFAULT_STATE", "FAILED", "RUNTIME", "USAGE", "Moment", "config_option", "confirm",
           "console", "destructive", "fail", "operate", "out", "print_figures", "size", "state_option", "text",
           "topology_problems", "with_progress"]
T = TypeVar("T")

# Neither stream folds lines at 80 columns when it is not a terminal (CI logs, pipes).
console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
# Tables stay readable when piped (rich would otherwise fold them to 80 columns).
out = Console(width=None if sys.stdout.isatty() else 200)
FAILED, USAGE, RUNTIME = 1, 2, 3
"""Exit codes: a check failed or an action was refused; bad usage or input; a runtime failure."""
DEFAULT_STATE = Path(os.environ.get("PAYDAR_STATE_DIR", ".paydar/state"))
DEFAULT_CONFIG = Path(os.environ.get("PAYDAR_CONFIG", "national.yaml"))

config_option = click.option("--config", "config", type=click.Path(path_type=Path), default=DEFAULT_CONFIG,
                             show_default=True, help="Topology file (env PAYDAR_CONFIG).")
state_option = click.option("--state-dir", type=click.Path(path_type=Path), default=DEFAULT_STATE,
                            show_default=True, help="Where keys, data and logs live (env PAYDAR_STATE_DIR).")


class Moment(click.ParamType[datetime]):
    """An ISO 8601 time, with any UTC offset (``2026-12-01T09:30:00+03:30``); one without is UTC."""

    name = "time"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not a time: use ISO 8601 such as 2026-12-01T09:30:00+03:30 "
                      "or 2026-12-01 06:00:00 (no offset: UTC)", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def fail(message: str, code: int = USAGE) -> NoReturn:
    """Print ``message`` as an error and exit with ``code`` (:data:`USAGE`, :data:`FAILED` or :data:`RUNTIME`)."""
    console.print("[bold red]error:[/] ", end="")
    console.print(message, markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)


F = TypeVar("F", bound=Callable[..., None])


def destructive(command: F) -> F:
    """Give a command that changes the running system ``--yes`` and ``--dry-run``."""
    command = click.option("--dry-run", is_flag=True,
                           help="Check the inputs and say what would change; change nothing.")(command)
    return click.option("--yes", "-y", is_flag=True,
                        help="Do not ask for confirmation (scripts; runbooks confirm each step themselves).")(command)


def confirm(what: str, yes: bool, dry_run: bool) -> None:
    """Stop here on ``--dry-run`` after saying what would happen; otherwise ask, unless ``--yes``.

    Without a terminal to ask on and without ``--yes`` it refuses (exit 2): a script that forgot
    the flag must not act on the national system by default.
    """
    if dry_run:
        out.print(f"dry run: would {what}. Nothing was changed.", markup=False, highlight=False, soft_wrap=True)
        sys.exit(0)
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"this would {what}: pass --yes to confirm (there is no terminal to ask on), or --dry-run to check "
             "it first")
    if not click.confirm(f"This will {what}. Go ahead?", default=False, err=True):
        fail("nothing was changed", FAILED)


def topology_problems(exc: TopologyError) -> NoReturn:
    """Every problem of a topology or stack file, with its location and hint; exit 2."""
    console.print(f"[bold red]{exc.source}: {len(exc.issues)} problem(s)[/]")
    for issue in exc.issues:
        hint = f"\n      hint: {issue.hint}" if issue.hint else ""
        # Messages quote patterns such as '^[a-z]...$': never read them as rich markup.
        console.print(f"  {issue.where}: {issue.message}{hint}", markup=False, highlight=False)
    sys.exit(2)


def operate(state_dir: Path, action: Callable[[Realization], T]) -> T:
    """Run an operator action against a running realization; bad input exits 2, refusals 1, runtime failures 3."""
    from botocore.exceptions import BotoCoreError, ClientError

    from paydar.infra.local.realizer import load_realization
    from paydar.ops.failover import FailoverRefused
    from paydar.ops.restore import RestoreFailed
    from paydar.vault.restore import NoBackup, RestoreRefused

    try:
        return action(load_realization(state_dir))
    except (FailoverRefused, RestoreRefused, RestoreFailed, NoBackup) as exc:
        fail(str(exc), FAILED)
    except (BotoCoreError, ClientError) as exc:
        fail(f"the vault did not answer as expected: {exc}; check `paydar status` (component vault)", RUNTIME)
    except KeyError as exc:
        fail(str(exc.args[0]))
    except BadInput as exc:
        fail(str(exc))
    except TopologyError as exc:
        topology_problems(exc)
    except PaydarError as exc:
        fail(str(exc), RUNTIME)


def text(value: object) -> str:
    """A table cell: empty for None."""
    return "" if value is None else str(value)


def size(size: int) -> str:
    """Bytes as kB or MB for a table."""
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def print_figures(title: str, figures: Mapping[str, float | int | str], as_json: bool) -> None:
    """A benchmark's figures as a table, or as JSON on stdout."""
    if as_json:
        out.print_json(json.dumps(figures))
        return
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    out.print(table)


def with_progress(what: str, job: Callable[[Callable[[str, int, int], None]], T]) -> T:
    """Run ``job(progress_callback)`` under a progress bar of components ready."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[last]}"), TimeElapsedColumn(), console=console,
                  transient=False) as progress:
        task = progress.add_task(what, total=None, last="")

        def update(component: str, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, last=f"{component} ready")

        return job(update)
