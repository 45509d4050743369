"""How command modules attach themselves to the parser: each group module has a
``register(cli)`` that adds its subcommands with :meth:`Commands.command`, naming the
handler function and the dataclass of arguments it receives. The parsed namespace
carries the :class:`Command` (``args.cmd``), so the parser and the handlers are
linked by objects, not by strings."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .context import Context
from .exit_codes import ExitCode

A = TypeVar("A")
if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


@dataclass(frozen=True)
class Command(Generic[A]):
    handler: Callable[[Context, A], Awaitable[ExitCode]]
    args_type: type[A]

    def bind(self, namespace: argparse.Namespace) -> A:
        """The handler's arguments, read from the parsed command line."""
        values = {f.name: getattr(namespace, f.name) for f in fields(self.args_type)}  # type: ignore[arg-type]
        return self.args_type(**values)

    async def run(self, ctx: Context, namespace: argparse.Namespace) -> ExitCode:
        return await self.handler(ctx, self.bind(namespace))


class Commands:
    """One level of subcommands (the root, or a group such as ``tasks``)."""

    def __init__(
        self, subs: SubParsers, common: argparse.ArgumentParser, registered: list[Command[Any]]
    ) -> None:
        self._subs = subs
        self._common = common
        self.registered = registered

    def group(self, name: str, help_: str) -> Commands:
        parser = self._subs.add_parser(name, help=help_)
        inner = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)
        return Commands(inner, self._common, self.registered)

    def command(
        self,
        name: str,
        help_: str,
        handler: Callable[[Context, A], Awaitable[ExitCode]],
        args_type: type[A],
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._subs.add_parser(
            name, help=help_, parents=[self._common]
        )
        command = Command(handler, args_type)
        parser.set_defaults(cmd=command)
        self.registered.append(command)
        return parser


def add_paging(parser: argparse.ArgumentParser) -> None:
    """``--limit``, ``--offset`` and ``--all`` (the fields of :class:`PageArgs`)."""
    parser.add_argument("--limit", type=int, help="page size (server default 50, max 1000)")
    parser.add_argument("--offset", type=int)
    parser.add_argument("--all", action="store_true", help="follow pagination to the end")
