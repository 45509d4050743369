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
holds when it holds for one of them.

Modules: :mod:`.model` (policies, rules, decisions), :mod:`.limits` (cost limits),
:mod:`.roles` (``user.role``), :mod:`.conditions` (compiling and evaluating),
:mod:`.engine` (:class:`PolicyEngine`).
"""

from __future__ import annotations

from .conditions import Condition, compile_condition, resource_context, user_context
from .engine import PolicyEngine
from .limits import (
    ASSUMED_RANGE,
    MAX_COMPREHENSION_NESTING,
    MAX_CONDITION_DEPTH,
    MAX_CONDITION_LENGTH,
    MAX_EVAL_SECONDS,
    MAX_EVAL_STEPS,
    MAX_LITERAL_ITEMS,
    ConditionTooComplex,
    PolicyConditionError,
)
from .model import EFFECTS, Decision, Policy, Rule, policy_from_document, rule_from_document

__all__ = [
    "ASSUMED_RANGE",
    "EFFECTS",
    "MAX_COMPREHENSION_NESTING",
    "MAX_CONDITION_DEPTH",
    "MAX_CONDITION_LENGTH",
    "MAX_EVAL_SECONDS",
    "MAX_EVAL_STEPS",
    "MAX_LITERAL_ITEMS",
    "Condition",
    "ConditionTooComplex",
    "Decision",
    "Policy",
    "PolicyConditionError",
    "PolicyEngine",
    "Rule",
    "compile_condition",
    "policy_from_document",
    "resource_context",
    "rule_from_document",
    "user_context",
]
