"""`paydar plan`: render and review the production stack offline."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.table import Table

from paydar.cli.common import RUNTIME, console, fail, out, topology_problems
from paydar.model.errors import BadInput, PaydarError, TopologyError

__all__ = ["plan"]


@click.command()
@click.option("--stack", default="staging", show_default=True,
              help="The stack to render: reads Pulumi.<stack>.yaml in the current directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole plan as JSON on stdout.")
def plan(stack: str, as_json: bool) -> None:
    """Render the production stack offline (Pulumi's mock runtime, no CLI, no cloud) and review it:
    resources per region, every open network path, what each vault identity may do, the stack
    outputs, and the resilience policies' verdict. Exit status 1 if a policy is violated.

    \b
    Review a change before `pulumi up`:
      paydar plan --stack staging
      paydar plan --stack production --json > plan.json
    """
    from paydar.infra.production.plan import plan_stack, summary

    try:
        with console.status(f"rendering stack {stack} with Pulumi's mock runtime"):
            found = summary(plan_stack(stack))
    except TopologyError as exc:
        topology_problems(exc)
    except BadInput as exc:
        fail(str(exc))
    except PaydarError as exc:
        fail(str(exc), RUNTIME)
    if as_json:
        out.print_json(json.dumps(found, default=str))
    else:
        _print_plan(found)
    sys.exit(0 if found["passed"] else 1)


def _print_plan(found: dict[str, Any]) -> None:
    out.print(f"[bold]stack {found['stack']}[/]: {found['resources']} resources")
    for region, counts in found["by_region"].items():
        table = Table(title=f"{region}: resources", show_header=False)
        for token, count in counts.items():
            table.add_row(token, str(count))
        out.print(table)
    for region, paths in found["open_paths"].items():
        out.print(f"[bold]{region}: open network paths[/] (everything else denied)")
        for path in paths:
            out.print(f"  {path}")
    out.print("[bold]vault permissions[/]")
    for name, grants in found["vault_permissions"].items():
        out.print(f"  {name}: {'; '.join(grants)}")
    out.print(f"[bold]outputs[/]: {json.dumps(found['outputs'], indent=1)}")
    for name, verdict in found["policies"].items():
        if verdict == "passed":
            out.print(f"[green]policy {name}: passed[/]")
        else:
            for violation in verdict:
                out.print(f"[red]policy {name}: {violation}[/]")
