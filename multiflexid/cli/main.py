"""multiflexi-cli: administer MultiFlexi from the shell and from scripts.

Every ``group command`` also answers as ``group:command`` (``application:import-json``),
``runtemplate`` also as ``run-template``. Exit codes: 0 success, 1 error (one line on
stderr), 2 bad usage.
"""

from __future__ import annotations

import sys

import click

import multiflexi
from multiflexid.privileges import become_data_dir_owner

from . import (
    access,
    actions,
    apps,
    bulk,
    check,
    companies,
    credentials,
    history,
    jobs,
    runtemplates,
    system,
    zabbix,
)
from .base import AliasGroup, CliState, remember_state, run_main


class RootGroup(AliasGroup):
    aliases = {"run-template": "runtemplate", "runtemplates": "runtemplate"}  # noqa: RUF012


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="Output as text, or as one JSON document on stdout (for scripts).",
)
@click.option(
    "--config", type=click.Path(dir_okay=False), envvar="MULTIFLEXI_CONFIG",
    help="TOML configuration file [default: /etc/multiflexi/multiflexi.conf].",
)
@click.version_option(multiflexi.__version__, prog_name="multiflexi-cli")
@click.pass_context
def cli(ctx: click.Context, fmt: str, config: str | None) -> None:
    """Administer MultiFlexi: applications, companies, credentials, run templates, jobs.

    Works directly on the database (also while the daemon is stopped). Settings come from
    the config file, then MULTIFLEXI_DATABASE_URL, MULTIFLEXI_DATA_DIR, MULTIFLEXI_SOCKET.
    """
    obj = ctx.ensure_object(CliState)
    obj.format = fmt
    obj.config = config
    remember_state(obj)


for module in (apps, companies, credentials, runtemplates, jobs, system, actions, access, check,
               zabbix):
    module.register(cli)
bulk.register(runtemplates.runtemplate)
history.register(jobs.job)


def main() -> None:
    become_data_dir_owner(sys.argv[1:])  # as root: act as the data dir's owner (multiflexi)
    sys.exit(run_main(cli))


if __name__ == "__main__":
    main()
