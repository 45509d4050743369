"""The policy engine: a fixed set of policies, evaluated per request. Deny overrides
allow, no match denies, and a Deny whose condition fails to evaluate denies (see the
package docstring)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from celpy.adapter import json_to_cel

from .conditions import (
    Condition,
    compile_expression,
    resource_context,
    run_condition,
    to_plain,
    user_context,
)
from .model import Decision, Policy, Rule


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
                condition = compile_expression(rule.condition) if rule.condition else None
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
        unusable: str | None = None  # why the context cannot be given to CEL
        for cand in candidates:
            if cand.condition is not None:
                if activation is None and unusable is None:
                    req = {"action": action, **dict(request or {})}
                    try:
                        activation = {
                            "user": json_to_cel(to_plain(user_context(user))),
                            "resource": json_to_cel(resource_context(resource)),
                            "request": json_to_cel(to_plain(req)),
                        }
                    except (ValueError, OverflowError, TypeError) as exc:
                        # e.g. an integer beyond CEL's 64 bits: no condition can run, so
                        # each is an error (an erroring Deny denies), never a crash
                        unusable = f"context cannot be evaluated: {exc}"
                outcome: bool | str
                if activation is None:
                    outcome = unusable or "context cannot be evaluated"
                else:
                    if cand.condition.per_role and per_role is None:
                        per_role = _role_activations(user, activation)
                    activations = per_role if cand.condition.per_role else [activation]
                    outcome = run_condition(cand.condition, activations or [activation])
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
        out.append({**activation, "user": json_to_cel(to_plain(ctx))})
    return out
