"""Security review: the policy engine fails closed when a Deny condition cannot be
evaluated (a caller who can omit a field must not escape a Deny rule)."""

from __future__ import annotations

from provisioning_common.policy import Policy, PolicyEngine, Rule

OPERATOR = {"id": "u1", "username": "olga", "roles": ["operator"]}


def _engine(*rules: Rule) -> PolicyEngine:
    return PolicyEngine([Policy("p1", "ops", "1", tuple(rules))])


def test_deny_whose_condition_errors_denies() -> None:
    engine = _engine(
        Rule("Allow", "servers:*", ("delete",)),
        Rule("Deny", "servers:*", ("delete",), "request.environment == 'production'"),
    )
    # the field is there: the Deny decides as written
    assert not engine.evaluate(
        user=OPERATOR, action="delete", resource="servers:a", request={"environment": "production"}
    ).allowed
    assert engine.evaluate(
        user=OPERATOR, action="delete", resource="servers:a", request={"environment": "dev"}
    ).allowed
    # the field is missing: the Deny cannot be evaluated, so the request is denied
    decision = engine.evaluate(user=OPERATOR, action="delete", resource="servers:a", request={})
    assert not decision.allowed
    assert decision.matched == ()  # an error is never reported as a rule match
    assert decision.errors
    assert "ops#1" in decision.errors[0]
    assert decision.to_dict()["decision"] == "Deny"


def test_erroring_deny_that_does_not_match_the_request_is_irrelevant() -> None:
    engine = _engine(
        Rule("Allow", "servers:*", ("read",)),
        Rule("Deny", "servers:*", ("delete",), "request.environment == 'production'"),
    )
    decision = engine.evaluate(user=OPERATOR, action="read", resource="servers:a", request={})
    assert decision.allowed
    assert decision.errors == ()
