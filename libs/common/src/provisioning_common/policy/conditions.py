"""Compiled conditions and their evaluation on a budget.

A condition is compiled once (:func:`compile_expression`: the slow part of
cel-python); one over a write-time limit is kept with its ``problem`` and never run.
Every evaluation runs on a budget of parse-tree steps and wall-clock time
(:mod:`.limits`); whatever goes wrong is returned as an error message, never raised."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import celpy
from celpy import celtypes
from celpy.evaluation import Activation, CELEvalError, Evaluator

from .cel_tree import CEL_ENV, Tree
from .limits import (
    MAX_EVAL_SECONDS,
    MAX_EVAL_STEPS,
    ConditionTooComplex,
    PolicyConditionError,
    check_limits,
    parse,
)
from .roles import rewrite_roles, uses_user_role


@dataclass(frozen=True)
class Condition:
    """A compiled condition. ``problem`` is set when it is over a write-time limit:
    it is then never run and always evaluates as an error."""

    ast: Tree | None
    runner: celpy.Runner | None
    per_role: bool = False
    problem: str | None = None


def compile_expression(expr: str) -> Condition:
    tree = parse(expr)
    try:
        check_limits(tree)
    except ConditionTooComplex as exc:
        return Condition(None, None, problem=str(exc))
    except RecursionError:
        return Condition(None, None, problem="condition too complex")
    tree = rewrite_roles(tree)
    try:
        runner = CEL_ENV.program(tree)
    except Exception as exc:
        raise PolicyConditionError(f"invalid condition: {exc}") from exc
    return Condition(tree, runner, per_role=uses_user_role(tree))


def compile_condition(expr: str) -> None:
    """Check that ``expr`` compiles and is within the cost limits; raise
    :class:`PolicyConditionError` (:class:`ConditionTooComplex` for a limit) otherwise."""
    problem = compile_expression(expr).problem
    if problem is not None:
        raise ConditionTooComplex(problem)


def to_plain(value: Any) -> Any:
    """JSON-like data CEL can take; anything else becomes its string form."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_plain(v) for v in value]
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

    def __init__(self, ast: Tree, activation: Activation, budget: _Budget) -> None:
        super().__init__(ast=ast, activation=activation)
        self.budget = budget

    def sub_evaluator(self, ast: Tree) -> Evaluator:
        return _BudgetedEvaluator(ast, self.activation, self.budget)

    def _visit_tree(self, tree: Tree) -> Any:
        self.budget.spend()
        return super()._visit_tree(tree)


def run_condition(condition: Condition, activations: list[dict[str, Any]]) -> bool | str:
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
