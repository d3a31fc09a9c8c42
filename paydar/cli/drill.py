"""`paydar drill`: prove the national system survives any single fault."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from paydar.chaos.safeguard import DEFAULT_FLOOR, DEFAULT_MAX_WAIT, DEFAULT_SECONDS
from paydar.cli.common import DEFAULT_STATE, FAILED, RUNTIME, USAGE, config_option, console, fail, out
from paydar.model.errors import BadInput, PaydarError

__all__ = ["drill"]


@click.command()
@config_option
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="Run in this state directory (default: a fresh one under .paydar/drills/; with --attach, "
                   "the running system's, env PAYDAR_STATE_DIR or .paydar/state).")
@click.option("--matrix", is_flag=True,
              help="Run the N-1 matrix (every component instance x every fault that applies to it, a node's "
                   "faults once on the primary and once on a standby: 106 cells for 3 regions x 4 services) "
                   "instead of the attack catalog (13 experiments).")
@click.option("--only", multiple=True, metavar="PATTERN",
              help="With --matrix: only the cells whose 'component:fault' name matches (shell-style, repeatable), "
                   "e.g. --only 'node.<service>@primary:*' --only '*:partition'.")
@click.option("--users", default=6, show_default=True, type=click.IntRange(1, 200),
              help="Locust citizens writing and reading through the gateways (spread evenly) throughout.")
@click.option("--dwell", default=2.0, show_default=True, type=click.FloatRange(0, 60),
              help="With --matrix: seconds each fault is held under load once citizens are served again.")
@click.option("--floor", default=DEFAULT_FLOOR, show_default=True, type=click.FloatRange(0, 1),
              help="Safeguard: abort a cell (its rollback still runs) when the share of citizen requests served "
                   "through the unaffected regions stays below this...")
@click.option("--floor-for", "floor_seconds", default=DEFAULT_SECONDS, show_default=True,
              type=click.FloatRange(0.5, 3600), metavar="SECONDS", help="...for longer than this.")
@click.option("--max-wait", "max_wait", default=DEFAULT_MAX_WAIT, show_default=True,
              type=click.FloatRange(1, 86400), metavar="SECONDS",
              help="The longest a cell waits for citizens to be served again, whatever the services' RTOs.")
@click.option("--keep", is_flag=True, help="Leave the system running afterwards.")
@click.option("--attach", is_flag=True, help="Drill the system already running from --state-dir; leave it running.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="Also write the report here.")
def drill(config: Path, state_dir: Path | None, matrix: bool, only: tuple[str, ...], users: int, dwell: float,
          floor: float, floor_seconds: float, max_wait: float, keep: bool, attach: bool,
          json_path: Path | None) -> None:
    """Prove the national system survives any single fault: bring it up, run steady Locust citizen load
    through every gateway, run every experiment of the attack catalog (chaos/experiments/) or the N-1
    matrix, read every acknowledged write back through every gateway, tear down.

    \b
    Exit status 0 only when every experiment's steady state held (citizens served through the
    unaffected regions, no acknowledged write lost, no corrupted document served), every service
    recovered its writes and reads within its own rto (or states the limit it hit under
    accepts:), nothing was lost beyond its rpo, and the final read-back found nothing lost or
    corrupted; 1 otherwise; 2 for bad usage (no matrix cell matches --only); 3 when the system
    could not be brought up or attached, or Locust could not run.
    \b
    The report is <state-dir>/report.json and a self-contained <state-dir>/report.html
    (per-service verdicts by tier, availability timeline, recovery times, the matrix as a heat
    map); Chaos Toolkit journals are under <state-dir>/chaos/journals/, and
    <state-dir>/evidence.tar.gz bundles it all, signed with the operator key (check it with
    `paydar evidence verify <state-dir>/evidence.tar.gz --state-dir <state-dir>`).
    \b
    Examples:
      paydar drill                                    # the catalog on national.yaml
      paydar drill --matrix                           # the whole N-1 matrix
      paydar drill --matrix --only 'gateway.*'        # part of it
      paydar drill --config examples/weakened/no-synchronous-standby.yaml   # must FAIL
    """
    from paydar.drill.run import DrillOptions, run_drill

    if only and not matrix:
        fail("--only narrows the N-1 matrix: add --matrix")
    options = DrillOptions(matrix=matrix, only=only, users=users, dwell=dwell, floor=floor,
                           floor_seconds=floor_seconds, max_wait=max_wait)
    try:
        report = run_drill(config=config, state_dir=state_dir or (DEFAULT_STATE if attach else None), keep=keep,
                           console=console, attach=attach, options=options)
    except BadInput as exc:
        fail(str(exc))
    except PaydarError as exc:
        fail(str(exc), RUNTIME)
    if json_path:
        json_path.write_text(json.dumps(report.as_dict(), indent=2))
    report.render(out)
    sys.exit({"usage": USAGE, "runtime": RUNTIME}.get(report.error_kind, 0 if report.passed else FAILED))
