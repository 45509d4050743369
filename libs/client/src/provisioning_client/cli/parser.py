"""provctl's argument parser (argparse: no extra dependency, predictable help).

The root parser holds the options every command accepts; each command group module
in :mod:`.commands` adds its own subcommands and handlers (see :mod:`.registry`)."""

from __future__ import annotations

import argparse
from typing import Any

from .commands import GROUPS
from .exit_codes import EXIT_CODES_HELP
from .registry import Command, Commands

__all__ = ["EXIT_CODES_HELP", "all_commands", "build_parser"]


def _common() -> argparse.ArgumentParser:
    """Options accepted both before and after the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        default=argparse.SUPPRESS,
        help="output format (json for scripting)",
    )
    common.add_argument(
        "--orchestrator-url",
        default=argparse.SUPPRESS,
        help="default $PROVISIONING_ORCHESTRATOR_URL or the login's URL",
    )
    common.add_argument(
        "--control-center-url",
        default=argparse.SUPPRESS,
        help="default $PROVISIONING_CONTROL_CENTER_URL or the login's URL",
    )
    return common


def _build() -> tuple[argparse.ArgumentParser, list[Command[Any]]]:
    common = _common()
    root = argparse.ArgumentParser(
        prog="provctl",
        parents=[common],
        description="Command line client of the provisioning control plane.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subs = root.add_subparsers(dest="command", metavar="COMMAND", required=True)
    cli = Commands(subs, common, [])
    for register in GROUPS:
        register(cli)
    return root, cli.registered


def build_parser() -> argparse.ArgumentParser:
    return _build()[0]


def all_commands() -> list[Command[Any]]:
    """Every command the parser knows, in registration order."""
    return _build()[1]
