"""Policy engine shared by both services (DESIGN §4, docs/interfaces.md).

A policy is a list of rules ``{effect, resource, action[], condition}``; ``resource``
and each action are glob patterns, ``condition`` is a CEL expression over ``user``,
``resource`` and ``request``. Deny overrides allow; no match denies; a condition that
fails at evaluation is reported in ``errors``, never as a match: an erroring Allow
does not allow, and an erroring Deny denies the request (fail closed; otherwise a
caller who can make a Deny condition fail, e.g. by omitting a field, escapes it).

Conditions are compiled once when the engine is built (compiling is the slow part of
cel-python), so an engine is meant to live until the policy set changes.

Cost (cel-python has no cost limits of its own): a condition is checked when it is
written (:func:`compile_condition`, the control center answers 422) for its length,
its nesting depth, its comprehension nesting, the size of its list and map literals
and an estimate of its evaluation steps; and every evaluation runs on a budget of
parse-tree steps and wall-clock time. A condition that exceeds either is an
evaluation error: an Allow does not allow, a Deny denies (the fail-closed rule
above). A stored condition over the write-time limits (written before they
existed) is never run and always counts as such an error.

Roles: ``user.roles`` is the list of the user's roles. ``user.role`` (the contract's
``user.role == 'admin'``) means "a role the user holds", whatever its position:
``user.role == X`` is rewritten to ``X in user.roles`` and ``user.role != X`` to
``!(X in user.roles)``; any other use of ``user.role`` is evaluated once per role and
holds when it holds for one of them."""

from __future__ import annotations

import copy
import fnmatch
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import Activation, CELEvalError, Evaluator

log = logging.getLogger(__name__)

_Tree = lark.Tree[Any]  # a cel-python parse tree

EFFECTS = ("Allow", "Deny")
MAX_CONDITION_LENGTH = 4096
MAX_CONDITION_DEPTH = 160  # parse-tree depth; one pair of parentheses is about 10
MAX_COMPREHENSION_NESTING = 2  # all/exists/exists_one/map/filter inside one another
MAX_LITERAL_ITEMS = 64  # elements of one list literal, entries of one map literal
ASSUMED_RANGE = 16  # size assumed for a list that comes from user/resource/request
MAX_EVAL_STEPS = 10_000  # parse-tree nodes one evaluation may visit (about 0.2 s)
MAX_EVAL_SECONDS = 0.5  # wall-clock backstop of one evaluation
COMPREHENSIONS = frozenset({"all", "exists", "exists_one", "map", "filter", "reduce"})


class PolicyConditionError(Exception):
    """A condition does not compile, or is over a cost limit; the message says which."""


class ConditionTooComplex(PolicyConditionError):
    """A condition compiles but is over a write-time cost limit."""


@dataclass(frozen=True)
class Rule:
    effect: str
    resource: str
    actions: tuple[str, ...]
    condition: str | None = None

    def matches(self, action: str, resource: str) -> bool:
        return fnmatch.fnmatchcase(resource, self.resource) and any(
            fnmatch.fnmatchcase(action, pattern) for pattern in self.actions
        )

    def explain(self, policy: Policy, index: int) -> dict[str, Any]:
        return {
            "policy_id": policy.id,
            "policy_name": policy.name,
            "rule_index": index,
            "effect": self.effect,
            "resource": self.resource,
            "action": list(self.actions),
            "condition": self.condition,
        }


@dataclass(frozen=True)
class Policy:
    id: str
    name: str
    version: str
    rules: tuple[Rule, ...]
    enabled: bool = True


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    matched: tuple[dict[str, Any], ...] = ()
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "decision": "Allow" if self.allowed else "Deny",
            "reason": self.reason,
            "matched_rules": list(self.matched),
            "errors": list(self.errors),
        }


def rule_from_document(doc: Mapping[str, Any]) -> Rule:
    effect = doc.get("effect")
    if effect not in EFFECTS:
        raise ValueError(f"rule effect must be one of {', '.join(EFFECTS)}")
    resource = doc.get("resource")
    if not isinstance(resource, str) or not resource:
        raise ValueError("rule resource must be a non-empty string")
    raw_actions = doc.get("action", doc.get("actions"))
    if isinstance(raw_actions, str):
        raw_actions = [raw_actions]
    if (
        not isinstance(raw_actions, list | tuple)
        or not raw_actions
        or not all(isinstance(a, str) and a for a in raw_actions)
    ):
        raise ValueError("rule action must be a non-empty list of strings")
    condition = doc.get("condition")
    if condition is not None and not isinstance(condition, str):
        raise ValueError("rule condition must be a string")
    return Rule(
        effect=str(effect),
        resource=resource,
        actions=tuple(raw_actions),
        condition=condition.strip() or None if condition else None,
    )


def policy_from_document(doc: Mapping[str, Any]) -> Policy:
    """Build a :class:`Policy` from the API / MongoDB document shape
    ``{id, name, version, rules: [{effect, resource, action: [...], condition}], enabled}``."""
    rules = doc.get("rules") or []
    if not isinstance(rules, list | tuple):
        raise ValueError("policy rules must be a list")
    return Policy(
        id=str(doc.get("id") or doc.get("_id") or ""),
        name=str(doc.get("name") or ""),
        version=str(doc.get("version") or ""),
        rules=tuple(rule_from_document(r) for r in rules),
        enabled=bool(doc.get("enabled", True)),
    )


# One environment for compiling: it holds no per-request state.
_ENV = celpy.Environment()


def _parse(expr: str) -> _Tree:
    if len(expr) > MAX_CONDITION_LENGTH:
        raise ConditionTooComplex(f"condition longer than {MAX_CONDITION_LENGTH} characters")
    try:
        return _ENV.compile(expr)
    except CELParseError as exc:
        raise PolicyConditionError(f"invalid condition: {str(exc).strip()}") from exc
    except Exception as exc:  # cel-python raises assorted errors for odd input
        raise PolicyConditionError(f"invalid condition: {exc}") from exc


# --- static checks ------------------------------------------------------------------------
def _trees(node: Any) -> list[_Tree]:
    return [c for c in node.children if isinstance(c, lark.Tree)]


def _depth(root: _Tree) -> int:
    """Depth of the parse tree, without recursion (the input may be very deep)."""
    deepest = 0
    stack = [(root, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_CONDITION_DEPTH:
            break
        stack.extend((child, level + 1) for child in _trees(node))
    return deepest


def _macro(node: _Tree) -> tuple[_Tree, str, list[_Tree]] | None:
    """``(range, name, args)`` of a comprehension ``range.name(var, ..., body)``."""
    if node.data != "member_dot_arg" or len(node.children) != 3:
        return None
    member, name, args = node.children
    if str(name) not in COMPREHENSIONS or not isinstance(args, lark.Tree):
        return None
    return member, str(name), _trees(args)


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


def _unwrap(node: Any) -> Any:
    """The meaningful node under single-child grammar layers (``(x)`` included)."""
    while isinstance(node, lark.Tree) and node.data in _WRAPPERS and len(node.children) == 1:
        node = node.children[0]
    return node


def _literal_items(node: _Tree) -> int | None:
    if node.data == "list_lit":
        return len(_trees(node)[0].children) if node.children else 0
    if node.data == "map_lit":
        return len(_trees(node)[0].children) // 2 if node.children else 0
    return None


def _range_size(node: Any) -> int:
    """How many times a comprehension over ``node`` runs its body (estimated)."""
    inner = _unwrap(node)
    if isinstance(inner, lark.Tree):
        items = _literal_items(inner)
        if items is not None:
            return items
        macro = _macro(inner)
        if macro is not None and macro[1] in ("map", "filter"):
            return _range_size(macro[0])
    return ASSUMED_RANGE


def _cost(node: _Tree, nesting: int = 0) -> int:
    """Estimated evaluation steps (visited nodes); raises on a literal or nesting limit."""
    items = _literal_items(node)
    if items is not None and items > MAX_LITERAL_ITEMS:
        kind = "list" if node.data == "list_lit" else "map"
        raise ConditionTooComplex(
            f"condition too complex: a {kind} literal with {items} items "
            f"(at most {MAX_LITERAL_ITEMS})"
        )
    macro = _macro(node)
    if macro is None:
        return 1 + sum(_cost(child, nesting) for child in _trees(node))
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


def _check_limits(tree: _Tree) -> None:
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


# --- user.role ----------------------------------------------------------------------------
def _is_ident(node: Any, name: str) -> bool:
    node = _unwrap(node)
    return (
        isinstance(node, lark.Tree)
        and node.data == "ident"
        and len(node.children) == 1
        and str(node.children[0]) == name
    )


def _is_user_role(node: Any, bound: frozenset[str]) -> bool:
    """``user.role`` or ``user['role']`` (and ``user`` is not a comprehension variable)."""
    node = _unwrap(node)
    if "user" in bound or not isinstance(node, lark.Tree) or len(node.children) != 2:
        return False
    base, key = node.children
    if node.data == "member_dot":
        return str(key) == "role" and _is_ident(base, "user")
    if node.data == "member_index":
        lit = _unwrap(key)
        return (
            isinstance(lit, lark.Tree)
            and lit.data == "literal"
            and str(lit.children[0]) in ("'role'", '"role"')
            and _is_ident(base, "user")
        )
    return False


def _macro_var(args: list[_Tree]) -> str | None:
    ident = _unwrap(args[0]) if args else None
    if isinstance(ident, lark.Tree) and ident.data == "ident" and ident.children:
        return str(ident.children[0])
    return None


_MEMBERSHIP = _ENV.compile("__role_value__ in user.roles")
_NOT_MEMBERSHIP = _ENV.compile("!(__role_value__ in user.roles)")


def _membership(value: _Tree, negate: bool) -> _Tree:
    """The ``relation`` node of ``value in user.roles`` (or its negation), where
    ``value`` is a ``relation`` node."""
    template = copy.deepcopy(_NOT_MEMBERSHIP if negate else _MEMBERSHIP)
    in_node = next(template.find_data("relation_in"))
    in_node.children[0] = value
    outer = _unwrap_to(template, "relation")
    return outer


def _unwrap_to(node: _Tree, data: str) -> _Tree:
    """The first ``data`` node on the single-child path down from ``node``."""
    while node.data != data:
        node = _trees(node)[0]
    return node


def _rewrite_roles(node: _Tree, bound: frozenset[str] = frozenset()) -> _Tree:
    """``user.role == X`` → ``X in user.roles``; ``user.role != X`` → ``!(X in user.roles)``."""
    macro = _macro(node)
    if macro is not None:
        member, _, args = macro
        var = _macro_var(args)
        inner = bound | {var} if var else bound
        node.children[0] = _rewrite_roles(member, bound)
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
            return _membership(lark.Tree("relation", [_rewrite_roles(right, bound)]), negate)
        if _is_user_role(right, bound) and not _is_user_role(left, bound):
            return _membership(_rewrite_roles(left, bound), negate)
    _replace_child(node, bound)
    return node


def _replace_child(node: _Tree, bound: frozenset[str]) -> None:
    node.children = [
        _rewrite_roles(c, bound) if isinstance(c, lark.Tree) else c for c in node.children
    ]


def _uses_user_role(node: _Tree, bound: frozenset[str] = frozenset()) -> bool:
    if _is_user_role(node, bound):
        return True
    macro = _macro(node)
    if macro is not None:
        member, _, args = macro
        var = _macro_var(args)
        inner = bound | {var} if var else bound
        return _uses_user_role(member, bound) or any(_uses_user_role(a, inner) for a in args[1:])
    return any(_uses_user_role(c, bound) for c in _trees(node))


# --- compiled conditions ------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    """A compiled condition. ``problem`` is set when it is over a write-time limit:
    it is then never run and always evaluates as an error."""

    ast: _Tree | None
    runner: celpy.Runner | None
    per_role: bool = False
    problem: str | None = None


def _compile(expr: str) -> Condition:
    tree = _parse(expr)
    try:
        _check_limits(tree)
    except ConditionTooComplex as exc:
        return Condition(None, None, problem=str(exc))
    except RecursionError:
        return Condition(None, None, problem="condition too complex")
    tree = _rewrite_roles(tree)
    try:
        runner = _ENV.program(tree)
    except Exception as exc:
        raise PolicyConditionError(f"invalid condition: {exc}") from exc
    return Condition(tree, runner, per_role=_uses_user_role(tree))


def compile_condition(expr: str) -> None:
    """Check that ``expr`` compiles and is within the cost limits; raise
    :class:`PolicyConditionError` (:class:`ConditionTooComplex` for a limit) otherwise."""
    problem = _compile(expr).problem
    if problem is not None:
        raise ConditionTooComplex(problem)


def _plain(value: Any) -> Any:
    """JSON-like data CEL can take; anything else becomes its string form."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)


def resource_context(resource: str) -> dict[str, str]:
    """``"servers:web-01"`` → ``{"type": "servers", "id": "web-01", "name": "servers:web-01"}``."""
    rtype, sep, rid = resource.partition(":")
    return {"type": rtype, "id": rid if sep else "", "name": resource}


def user_context(user: Mapping[str, Any]) -> dict[str, Any]:
    """``user`` as conditions see it: ``roles`` (a list) and ``role`` (the first role;
    conditions on ``user.role`` are evaluated over every role, see the module doc)."""
    ctx = dict(user)
    roles = ctx.get("roles") or []
    ctx["roles"] = list(roles)
    ctx.setdefault("role", roles[0] if roles else "")
    ctx.setdefault("id", "")
    ctx.setdefault("username", "")
    return ctx


@dataclass
class _CompiledRule:
    policy: Policy
    index: int
    rule: Rule
    condition: Condition | None = field(default=None)


class PolicyEngine:
    """Evaluate requests against a fixed set of policies (disabled ones are ignored)."""

    def __init__(self, policies: Iterable[Policy]) -> None:
        self.policies = tuple(policies)
        self._rules: list[_CompiledRule] = []
        for policy in self.policies:
            if not policy.enabled:
                continue
            for index, rule in enumerate(policy.rules):
                condition = _compile(rule.condition) if rule.condition else None
                self._rules.append(_CompiledRule(policy, index, rule, condition))

    def __len__(self) -> int:
        return len(self._rules)

    def evaluate(
        self,
        *,
        user: Mapping[str, Any],
        action: str,
        resource: str,
        request: Mapping[str, Any] | None = None,
    ) -> Decision:
        candidates = [c for c in self._rules if c.rule.matches(action, resource)]
        if not candidates:
            return Decision(False, f"no policy rule allows '{action}' on '{resource}'")
        activation: dict[str, Any] | None = None
        per_role: list[dict[str, Any]] | None = None
        allows: list[dict[str, Any]] = []
        denies: list[dict[str, Any]] = []
        errors: list[str] = []
        deny_errored = False
        for cand in candidates:
            if cand.condition is not None:
                if activation is None:
                    req = {"action": action, **dict(request or {})}
                    activation = {
                        "user": json_to_cel(_plain(user_context(user))),
                        "resource": json_to_cel(resource_context(resource)),
                        "request": json_to_cel(_plain(req)),
                    }
                if cand.condition.per_role and per_role is None:
                    per_role = _role_activations(user, activation)
                activations = per_role if cand.condition.per_role else [activation]
                outcome = _run(cand.condition, activations or [activation])
                if isinstance(outcome, str):
                    label = f"{cand.policy.name or cand.policy.id}#{cand.index}"
                    errors.append(f"{label}: {outcome}")
                    deny_errored = deny_errored or cand.rule.effect == "Deny"
                    continue
                if not outcome:
                    continue
            explained = cand.rule.explain(cand.policy, cand.index)
            (denies if cand.rule.effect == "Deny" else allows).append(explained)
        if denies:
            first = denies[0]
            return Decision(
                False,
                f"denied by policy '{first['policy_name']}' rule {first['rule_index']}",
                tuple(denies),
                tuple(errors),
            )
        if deny_errored:
            # a Deny that could not be evaluated might have applied: deny, not allow
            return Decision(
                False, "denied: a Deny rule's condition failed to evaluate", (), tuple(errors)
            )
        if allows:
            first = allows[0]
            return Decision(
                True,
                f"allowed by policy '{first['policy_name']}' rule {first['rule_index']}",
                tuple(allows),
                tuple(errors),
            )
        reason = f"no policy rule allows '{action}' on '{resource}'"
        if errors:
            reason += " (condition errors)"
        return Decision(False, reason, (), tuple(errors))


def _role_activations(user: Mapping[str, Any], activation: dict[str, Any]) -> list[dict[str, Any]]:
    """One activation per role the user holds, ``user.role`` bound to it (a caller
    that set ``role`` itself gets just that one)."""
    roles = list(user.get("roles") or [])
    if "role" in user or len(roles) < 2:
        return [activation]
    out = []
    for role in dict.fromkeys(roles):
        ctx = user_context({**user, "role": role})
        out.append({**activation, "user": json_to_cel(_plain(ctx))})
    return out


class _OverBudget(BaseException):
    """Raised inside cel-python's evaluator when the budget is spent. A BaseException,
    so that cel-python's ``except Exception`` handlers cannot turn it into a value
    (``error || true`` is ``true`` in CEL)."""


class _Budget:
    __slots__ = ("deadline", "exceeded", "steps")

    def __init__(self, steps: int, seconds: float) -> None:
        self.steps = steps
        self.deadline = time.monotonic() + seconds
        self.exceeded: str | None = None

    def spend(self) -> None:
        self.steps -= 1
        if self.exceeded is None:
            if self.steps < 0:
                self.exceeded = f"more than {MAX_EVAL_STEPS} evaluation steps"
            elif time.monotonic() > self.deadline:
                self.exceeded = f"longer than {MAX_EVAL_SECONDS} s"
        if self.exceeded is not None:
            raise _OverBudget(self.exceeded)


class _BudgetedEvaluator(Evaluator):
    """cel-python's tree-walking evaluator, charging every visited node to a budget
    (comprehension bodies run in sub-evaluators, which share it)."""

    def __init__(self, ast: _Tree, activation: Activation, budget: _Budget) -> None:
        super().__init__(ast=ast, activation=activation)
        self.budget = budget

    def sub_evaluator(self, ast: _Tree) -> Evaluator:
        return _BudgetedEvaluator(ast, self.activation, self.budget)

    def _visit_tree(self, tree: _Tree) -> Any:
        self.budget.spend()
        return super()._visit_tree(tree)


def _run(condition: Condition, activations: list[dict[str, Any]]) -> bool | str:
    """True/False, or the error message when the condition fails, is not boolean or
    is over its cost budget. Over several activations (one per role): True when one
    of them is True, else the first error, else False."""
    if condition.problem is not None or condition.ast is None or condition.runner is None:
        return f"not evaluated: {condition.problem or 'condition too complex'}"
    budget = _Budget(MAX_EVAL_STEPS, MAX_EVAL_SECONDS)
    first_error: str | None = None
    for activation in activations:
        outcome = _run_one(condition, activation, budget)
        if outcome is True:
            return True
        if isinstance(outcome, str) and first_error is None:
            first_error = outcome
        if budget.exceeded is not None:
            break
    return first_error if first_error is not None else False


def _run_one(condition: Condition, activation: Mapping[str, Any], budget: _Budget) -> bool | str:
    assert condition.ast is not None
    assert condition.runner is not None
    evaluator = _BudgetedEvaluator(condition.ast, condition.runner.new_activation(), budget)
    try:
        value = evaluator.evaluate(dict(activation))
    except _OverBudget:
        value = None
    except CELEvalError as exc:
        return f"evaluation error: {exc.args[0] if exc.args else exc}"
    except RecursionError:
        return "evaluation error: too deeply nested"
    except Exception as exc:  # a broken condition must deny, never crash the caller
        return f"evaluation error: {type(exc).__name__}"
    if budget.exceeded is not None:
        # whatever cel-python made of the interrupted evaluation, it is not a result
        return f"evaluation stopped: {budget.exceeded}"
    if isinstance(value, CELEvalError):
        return f"evaluation error: {value.args[0] if value.args else value}"
    if not isinstance(value, celtypes.BoolType):
        return f"condition returned {type(value).__name__}, not a boolean"
    return bool(value)
