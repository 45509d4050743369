"""``user.role`` (the contract's ``user.role == 'admin'``) means "a role the user
holds": ``user.role == X`` is rewritten to ``X in user.roles`` and ``user.role != X``
to ``!(X in user.roles)``; a condition with any other use of ``user.role`` is marked
to be evaluated once per role (see :func:`uses_user_role`)."""

from __future__ import annotations

import copy
from typing import Any

import lark

from .cel_tree import CEL_ENV, Tree, comprehension_parts, trees, unwrap


def _is_ident(node: Any, name: str) -> bool:
    node = unwrap(node)
    return (
        isinstance(node, lark.Tree)
        and node.data == "ident"
        and len(node.children) == 1
        and str(node.children[0]) == name
    )


def _is_user_role(node: Any, bound: frozenset[str]) -> bool:
    """``user.role`` or ``user['role']`` (and ``user`` is not a comprehension variable)."""
    node = unwrap(node)
    if "user" in bound or not isinstance(node, lark.Tree) or len(node.children) != 2:
        return False
    base, key = node.children
    if node.data == "member_dot":
        return str(key) == "role" and _is_ident(base, "user")
    if node.data == "member_index":
        lit = unwrap(key)
        return (
            isinstance(lit, lark.Tree)
            and lit.data == "literal"
            and str(lit.children[0]) in ("'role'", '"role"')
            and _is_ident(base, "user")
        )
    return False


def _macro_var(args: list[Tree]) -> str | None:
    ident = unwrap(args[0]) if args else None
    if isinstance(ident, lark.Tree) and ident.data == "ident" and ident.children:
        return str(ident.children[0])
    return None


_MEMBERSHIP = CEL_ENV.compile("__role_value__ in user.roles")
_NOT_MEMBERSHIP = CEL_ENV.compile("!(__role_value__ in user.roles)")


def _membership(value: Tree, negate: bool) -> Tree:
    """The ``relation`` node of ``value in user.roles`` (or its negation), where
    ``value`` is a ``relation`` node."""
    template = copy.deepcopy(_NOT_MEMBERSHIP if negate else _MEMBERSHIP)
    in_node = next(template.find_data("relation_in"))
    in_node.children[0] = value
    outer = _unwrap_to(template, "relation")
    return outer


def _unwrap_to(node: Tree, data: str) -> Tree:
    """The first ``data`` node on the single-child path down from ``node``."""
    while node.data != data:
        node = trees(node)[0]
    return node


def rewrite_roles(node: Tree, bound: frozenset[str] = frozenset()) -> Tree:
    """``user.role == X`` → ``X in user.roles``; ``user.role != X`` → ``!(X in user.roles)``."""
    macro = comprehension_parts(node)
    if macro is not None:
        member, _, args = macro
        var = _macro_var(args)
        inner = bound | {var} if var else bound
        node.children[0] = rewrite_roles(member, bound)
        for arg in args[1:]:
            _replace_child(arg, inner)
        return node
    if (
        node.data == "relation"
        and len(node.children) == 2
        and isinstance(node.children[0], lark.Tree)
        and node.children[0].data in ("relation_eq", "relation_ne")
    ):
        op, right = node.children
        left = op.children[0]
        negate = op.data == "relation_ne"
        if _is_user_role(left, bound) and not _is_user_role(right, bound):
            return _membership(lark.Tree("relation", [rewrite_roles(right, bound)]), negate)
        if _is_user_role(right, bound) and not _is_user_role(left, bound):
            return _membership(rewrite_roles(left, bound), negate)
    _replace_child(node, bound)
    return node


def _replace_child(node: Tree, bound: frozenset[str]) -> None:
    node.children = [
        rewrite_roles(c, bound) if isinstance(c, lark.Tree) else c for c in node.children
    ]


def uses_user_role(node: Tree, bound: frozenset[str] = frozenset()) -> bool:
    if _is_user_role(node, bound):
        return True
    macro = comprehension_parts(node)
    if macro is not None:
        member, _, args = macro
        var = _macro_var(args)
        inner = bound | {var} if var else bound
        return uses_user_role(member, bound) or any(uses_user_role(a, inner) for a in args[1:])
    return any(uses_user_role(c, bound) for c in trees(node))
