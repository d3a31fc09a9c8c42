"""The `paydar` command: parse, call the library, render. Nothing else lives here.

One module per command group (system, failover, backups, drill, evidence, production, keys,
runbook, bench); what they share is in :mod:`paydar.cli.common`.
"""

from __future__ import annotations

import logging

import click

from paydar.cli import (
    backups,
    bench,
    drill,
    evidence,
    failover,
    keys,
    production,
    runbook,
    system,
)

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="paydar", prog_name="paydar")
@click.option("-v", "--verbose", is_flag=True, help="Log library activity to stderr.")
def cli(verbose: bool) -> None:
    """Paydar keeps government digital services running while they are under attack.

    \b
    Typical session:
      paydar validate                 check national.yaml
      paydar up                       run the whole national system on 127.0.0.1
      paydar status                   every component: role, epoch, log position, health
      paydar failover promote --service ID --region REGION
      paydar failover drain --region REGION   planned evacuation through the controllers
      paydar backup now --service ID          verified, signed snapshots into the vault
      paydar backups list --service ID        what the vault holds, each manifest verified
      paydar restore --service ID --region REGION   rebuild a node from a verified backup
      paydar rebuild --service ID --region REGION   clone a PostgreSQL instance afresh
      paydar down                     stop exactly what `up` started
      paydar drill                    the attack catalog under citizen load; a signed evidence bundle
      paydar evidence verify BUNDLE   check a drill's evidence against the operator key
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s %(message)s")


for command in (system.validate, system.up, system.down, system.check, system.status, system.component,
                failover.failover, backups.backup, backups.backups, backups.restore, backups.rebuild,
                drill.drill, production.plan, keys.keys, runbook.runbook, bench.bench, evidence.evidence):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="paydar")


if __name__ == "__main__":
    main()
