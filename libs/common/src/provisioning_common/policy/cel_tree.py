"""cel-python parse trees: the compiling environment and the helpers that walk a
condition's tree (shared by the cost checks and the ``user.role`` rewrite)."""

from __future__ import annotations

from typing import Any

import celpy
import lark

Tree = lark.Tree[Any]  # a cel-python parse tree

COMPREHENSIONS = frozenset({"all", "exists", "exists_one", "map", "filter", "reduce"})

# One environment for compiling: it holds no per-request state.
CEL_ENV = celpy.Environment()


def trees(node: Any) -> list[Tree]:
    return [c for c in node.children if isinstance(c, lark.Tree)]


def comprehension_parts(node: Tree) -> tuple[Tree, str, list[Tree]] | None:
    """``(range, name, args)`` of a comprehension ``range.name(var, ..., body)``."""
    if node.data != "member_dot_arg" or len(node.children) != 3:
        return None
    member, name, args = node.children
    if str(name) not in COMPREHENSIONS or not isinstance(args, lark.Tree):
        return None
    return member, str(name), trees(args)


_WRAPPERS = frozenset(
    {
        "expr",
        "conditionalor",
        "conditionaland",
        "relation",
        "addition",
        "multiplication",
        "unary",
        "member",
        "primary",
        "paren_expr",
    }
)


def unwrap(node: Any) -> Any:
    """The meaningful node under single-child grammar layers (``(x)`` included)."""
    while isinstance(node, lark.Tree) and node.data in _WRAPPERS and len(node.children) == 1:
        node = node.children[0]
    return node
