"""One resource naming scheme for every authorization decision (docs/interfaces.md,
"Resource names"). A task is authorized on what its provisioning command acts on,
whichever endpoint creates it (a workflow, a batch, a rollback):

=============================================  ===================================
command                                        resource
=============================================  ===================================
``servers <verb> --infra I ...``               ``servers:I``
``servers <verb> --provider P --name N ...``   ``servers:P/N``
``taskserv <verb> T --infra I ...``            ``taskservs:I/T``
``taskserv <verb> T --provider P``             ``taskservs:P/T``
``cluster <verb> C --infra I ...``             ``clusters:I/C``
``cluster <verb> C --provider P``              ``clusters:P/C``
=============================================  ===================================

The action is the command's verb (``create``, ``delete``, ``update``); a compensation
is a ``delete`` on the resource of the task it undoes. Records (``tasks:<id>``,
``batches:<id>``, ``rollback:<id>``) carry their owner, the ``sub`` of the user who
created them, which policies read as ``request.owner``."""

from __future__ import annotations

from collections.abc import Sequence

NOUNS = {"servers": "servers", "taskserv": "taskservs", "cluster": "clusters"}
_VALUED = frozenset({"--infra", "--settings", "--provider", "--name", "--plan", "--zone"})


def resource(kind: str, scope: str, name: str | None = None) -> str:
    """``<kind>:<scope>`` or ``<kind>:<scope>/<name>``."""
    return f"{kind}:{scope}/{name}" if name else f"{kind}:{scope}"


def command_resource(subcommand: Sequence[str], args: Sequence[str]) -> str:
    """The resource a provisioning command (``subcommand`` + ``args``) acts on."""
    if not subcommand:
        raise ValueError("a command needs a subcommand")
    noun = NOUNS.get(subcommand[0], subcommand[0])
    options: dict[str, str] = {}
    positional: list[str] = []
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        if arg in _VALUED and i + 1 < len(items):
            options[arg] = items[i + 1]
            i += 2
            continue
        if not arg.startswith("--"):
            positional.append(arg)
        i += 1
    scope = options.get("--infra") or options.get("--provider")
    if not scope:
        raise ValueError(f"cannot name the resource of {' '.join(subcommand)}")
    name = options.get("--name") if noun == "servers" else (positional[0] if positional else None)
    return resource(noun, scope, name)


def command_action(subcommand: Sequence[str]) -> str:
    """The action of a command: its verb (``servers create`` → ``create``)."""
    return subcommand[1] if len(subcommand) > 1 else subcommand[0]
