"""The cost limits of a condition (cel-python has none of its own): checked when a
condition is written (:func:`parse` and :func:`check_limits`: its length, nesting
depth, comprehension nesting, literal sizes and an estimate of its evaluation steps),
and the budget every evaluation runs on (``MAX_EVAL_STEPS``, ``MAX_EVAL_SECONDS``)."""

from __future__ import annotations

from typing import Any

import lark
from celpy.celparser import CELParseError

from .cel_tree import CEL_ENV, Tree, comprehension_parts, trees, unwrap

MAX_CONDITION_LENGTH = 4096
MAX_CONDITION_DEPTH = 160  # parse-tree depth; one pair of parentheses is about 10
MAX_COMPREHENSION_NESTING = 2  # all/exists/exists_one/map/filter inside one another
MAX_LITERAL_ITEMS = 64  # elements of one list literal, entries of one map literal
ASSUMED_RANGE = 16  # size assumed for a list that comes from user/resource/request
MAX_EVAL_STEPS = 10_000  # parse-tree nodes one evaluation may visit (about 0.2 s)
MAX_EVAL_SECONDS = 0.5  # wall-clock backstop of one evaluation


class PolicyConditionError(Exception):
    """A condition does not compile, or is over a cost limit; the message says which."""


class ConditionTooComplex(PolicyConditionError):
    """A condition compiles but is over a write-time cost limit."""


def parse(expr: str) -> Tree:
    if len(expr) > MAX_CONDITION_LENGTH:
        raise ConditionTooComplex(f"condition longer than {MAX_CONDITION_LENGTH} characters")
    try:
        return CEL_ENV.compile(expr)
    except CELParseError as exc:
        raise PolicyConditionError(f"invalid condition: {str(exc).strip()}") from exc
    except Exception as exc:  # cel-python raises assorted errors for odd input
        raise PolicyConditionError(f"invalid condition: {exc}") from exc


def _depth(root: Tree) -> int:
    """Depth of the parse tree, without recursion (the input may be very deep)."""
    deepest = 0
    stack = [(root, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_CONDITION_DEPTH:
            break
        stack.extend((child, level + 1) for child in trees(node))
    return deepest


def _literal_items(node: Tree) -> int | None:
    if node.data == "list_lit":
        return len(trees(node)[0].children) if node.children else 0
    if node.data == "map_lit":
        return len(trees(node)[0].children) // 2 if node.children else 0
    return None


def _range_size(node: Any) -> int:
    """How many times a comprehension over ``node`` runs its body (estimated)."""
    inner = unwrap(node)
    if isinstance(inner, lark.Tree):
        items = _literal_items(inner)
        if items is not None:
            return items
        macro = comprehension_parts(inner)
        if macro is not None and macro[1] in ("map", "filter"):
            return _range_size(macro[0])
    return ASSUMED_RANGE


def _cost(node: Tree, nesting: int = 0) -> int:
    """Estimated evaluation steps (visited nodes); raises on a literal or nesting limit."""
    items = _literal_items(node)
    if items is not None and items > MAX_LITERAL_ITEMS:
        kind = "list" if node.data == "list_lit" else "map"
        raise ConditionTooComplex(
            f"condition too complex: a {kind} literal with {items} items "
            f"(at most {MAX_LITERAL_ITEMS})"
        )
    macro = comprehension_parts(node)
    if macro is None:
        return 1 + sum(_cost(child, nesting) for child in trees(node))
    member, name, args = macro
    if nesting + 1 > MAX_COMPREHENSION_NESTING:
        raise ConditionTooComplex(
            f"condition too complex: comprehensions ({name}) nested {nesting + 1} deep "
            f"(at most {MAX_COMPREHENSION_NESTING})"
        )
    body = args[-1]
    others = sum(_cost(a, nesting) for a in args[1:-1])  # reduce()'s initial value
    per_item = _cost(body, nesting + 1) + 2
    return 2 + _cost(member, nesting) + others + _range_size(member) * per_item


def check_limits(tree: Tree) -> None:
    depth = _depth(tree)
    if depth > MAX_CONDITION_DEPTH:
        raise ConditionTooComplex(
            f"condition too complex: nested more than {MAX_CONDITION_DEPTH} levels deep"
        )
    estimate = _cost(tree)
    if estimate > MAX_EVAL_STEPS:
        raise ConditionTooComplex(
            f"condition too expensive: about {estimate} evaluation steps "
            f"(at most {MAX_EVAL_STEPS}; lists from the input count as {ASSUMED_RANGE} items)"
        )
