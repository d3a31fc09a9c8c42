"""`paydar keys`: component identities."""

from __future__ import annotations

from pathlib import Path

import click

from paydar.cli.common import confirm, destructive, operate, out, state_option

__all__ = ["keys"]


@click.group()
def keys() -> None:
    """Component identities (Ed25519 keys, mode 0600, under the state directory)."""


@keys.command("rotate")
@click.option("--component", required=True, help="The component whose key to replace, e.g. controller.<region>.")
@state_option
@destructive
def keys_rotate(component: str, state_dir: Path, yes: bool, dry_run: bool) -> None:
    """Give COMPONENT a new key and make every other component refuse the old one.

    The trust root is rewritten and reloaded by every node, gateway and controller (SIGHUP);
    for a controller the others first re-sign the routing table in force; then the new key
    replaces the old file and the component restarts with it. Use it when a key may be stolen
    (see the runbooks lying-prober and compromised-controller-key).
    """
    from paydar.ops.keys import preview_rotation, rotate

    confirm(operate(state_dir, lambda system: preview_rotation(system, component)), yes, dry_run)
    done = operate(state_dir, lambda system: rotate(system, component, lambda text: out.print(f"  {text}")))
    out.print(f"{done.component}: key {done.old_key_id} replaced by {done.new_key_id} in {done.seconds:.1f}s; "
              f"table in force v{done.table_version}; the old key is refused from now on")
