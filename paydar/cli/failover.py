"""`paydar failover`: move a service's primary through the signed routing-table path."""

from __future__ import annotations

from pathlib import Path

import click

from paydar.cli.common import confirm, destructive, operate, out, state_option

__all__ = ["failover"]


@click.group()
def failover() -> None:
    """Move a service's primary through the signed routing-table path.

    Each command signs an intent with the operator key (<state-dir>/keys/operator.key, which no
    component holds) and posts it to every controller; the table that results still needs
    control.threshold controller signatures."""


@failover.command()
@click.option("--service", required=True, help="Service identifier (as `paydar status` lists it).")
@click.option("--region", required=True, help="Region whose standby becomes primary.")
@state_option
@destructive
def promote(service: str, region: str, state_dir: Path, yes: bool, dry_run: bool) -> None:
    """Promote a standby: the controllers fence the old primary, prove, then promote.

    Refuses (and changes nothing) when the standby lacks acknowledged writes or when that
    cannot be proven. The table is signed by the controllers (k of n), never by this command.
    """
    from paydar.failover.intents import IntentAction
    from paydar.ops.failover import preview
    from paydar.ops.failover import promote as do_promote

    confirm(operate(state_dir, lambda r: preview(r, IntentAction.PROMOTE, region, service)), yes, dry_run)
    result = operate(state_dir, lambda r: do_promote(r, service, region))
    out.print(f"service {service}: primary {result.old_primary} -> {result.new_primary}, epoch {result.epoch}, "
              f"table v{result.version} ({result.check})")


@failover.command()
@click.option("--service", required=True, help="Service identifier (as `paydar status` lists it).")
@click.option("--region", required=True, help="Region whose node must not serve as primary.")
@state_option
@destructive
def fence(service: str, region: str, state_dir: Path, yes: bool, dry_run: bool) -> None:
    """Fence one node (a suspect replica): it stays a standby and is never promoted.

    If it is the primary, the service fails over to a standby proven to hold every
    acknowledged write. Undo with `paydar failover clear --region R --service ID`.
    """
    from paydar.failover.intents import IntentAction
    from paydar.ops.failover import fence as do_fence
    from paydar.ops.failover import preview

    confirm(operate(state_dir, lambda r: preview(r, IntentAction.FENCE, region, service)), yes, dry_run)
    table = operate(state_dir, lambda r: do_fence(r, service, region))
    route = table.route(service)
    out.print(f"service {service}: {region} fenced; primary {route.primary}, epoch {route.epoch}, "
              f"table v{table.version}")


@failover.command()
@click.option("--region", required=True, help="Region to evacuate.")
@state_option
@destructive
def drain(region: str, state_dir: Path, yes: bool, dry_run: bool) -> None:
    """Planned evacuation: move every primary out of REGION (its nodes stay standbys).

    Each service moves through fence-then-promote, so no acknowledged write is lost.
    Undo with `paydar failover clear --region R` (primaries do not move back by themselves).
    """
    from paydar.failover.intents import IntentAction
    from paydar.ops.failover import drain as do_drain
    from paydar.ops.failover import preview

    confirm(operate(state_dir, lambda r: preview(r, IntentAction.DRAIN, region)), yes, dry_run)
    table = operate(state_dir, lambda r: do_drain(r, region))
    moved = ", ".join(f"{sid}->{route.primary}" for sid, route in sorted(table.services.items()))
    out.print(f"{region} drained in table v{table.version}: {moved}")


@failover.command()
@click.option("--region", required=True, help="Region whose intents to withdraw.")
@click.option("--service", default=None, help="Only this service's intents (default: all on the region).")
@state_option
def clear(region: str, service: str | None, state_dir: Path) -> None:
    """Withdraw operator intents (undrain, unfence) on REGION."""
    from paydar.ops.failover import clear as do_clear

    outcomes = operate(state_dir, lambda r: do_clear(r, region, service))
    out.print(f"intents on {region}{' for ' + service if service else ''} cleared on "
              f"{sum(o == 'accepted' for o in outcomes.values())} controller(s)")
