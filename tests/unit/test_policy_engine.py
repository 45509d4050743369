"""Policy engine: wildcards, deny-overrides, CEL conditions, compile and runtime errors."""

from __future__ import annotations

from typing import Any

import pytest

from provisioning_common.policy import (
    MAX_COMPREHENSION_NESTING,
    MAX_EVAL_STEPS,
    MAX_LITERAL_ITEMS,
    ConditionTooComplex,
    Decision,
    Policy,
    PolicyConditionError,
    PolicyEngine,
    Rule,
    compile_condition,
    policy_from_document,
    resource_context,
)

ADMIN = {"id": "u1", "username": "alice", "roles": ["admin", "operator"]}
VIEWER = {"id": "u2", "username": "bob", "roles": ["viewer"]}


def rule(effect: str, resource: str, *actions: str, condition: str | None = None) -> Rule:
    return Rule(effect=effect, resource=resource, actions=tuple(actions), condition=condition)


def engine(*rules: Rule, enabled: bool = True) -> PolicyEngine:
    return PolicyEngine([Policy("p1", "test", "1.0.0", tuple(rules), enabled)])


def decide(
    e: PolicyEngine,
    user: dict[str, Any],
    action: str,
    resource: str,
    request: dict[str, Any] | None = None,
) -> Decision:
    return e.evaluate(user=user, action=action, resource=resource, request=request)


def test_no_rules_denies() -> None:
    d = decide(PolicyEngine([]), ADMIN, "read", "servers:a")
    assert not d.allowed
    assert d.matched == ()
    assert "no policy rule" in d.reason


@pytest.mark.parametrize(
    ("pattern", "actions", "action", "resource", "allowed"),
    [
        ("servers:*", ("create",), "create", "servers:web-01", True),
        ("servers:*", ("create",), "delete", "servers:web-01", False),
        ("servers:*", ("*",), "delete", "servers:web-01", True),
        ("servers:*", ("create",), "create", "clusters:web-01", False),
        ("*", ("read",), "read", "anything:x", True),
        ("servers:web-*", ("read",), "read", "servers:web-07", True),
        ("servers:web-*", ("read",), "read", "servers:db-07", False),
        ("servers:web-01", ("read",), "read", "servers:web-01", True),
        ("tasks:*", ("read", "cancel"), "cancel", "tasks:42", True),
        ("tasks:*", ("re*",), "read", "tasks:42", True),
        ("Servers:*", ("read",), "read", "servers:a", False),  # case-sensitive
    ],
)
def test_wildcards(
    pattern: str, actions: tuple[str, ...], action: str, resource: str, allowed: bool
) -> None:
    d = decide(engine(rule("Allow", pattern, *actions)), ADMIN, action, resource)
    assert d.allowed is allowed
    assert bool(d.matched) is allowed


def test_deny_overrides_allow_in_any_order() -> None:
    for rules in (
        (rule("Allow", "*", "*"), rule("Deny", "servers:*", "delete")),
        (rule("Deny", "servers:*", "delete"), rule("Allow", "*", "*")),
    ):
        e = engine(*rules)
        d = decide(e, ADMIN, "delete", "servers:a")
        assert not d.allowed
        assert [m["effect"] for m in d.matched] == ["Deny"]
        assert "denied by policy 'test'" in d.reason
        assert decide(e, ADMIN, "create", "servers:a").allowed


def test_deny_overrides_across_policies() -> None:
    e = PolicyEngine(
        [
            Policy("a", "allow-all", "1", (rule("Allow", "*", "*"),)),
            Policy("b", "deny-prod", "1", (rule("Deny", "servers:prod-*", "*"),)),
        ]
    )
    d = decide(e, ADMIN, "create", "servers:prod-1")
    assert not d.allowed
    assert d.matched[0]["policy_id"] == "b"
    assert decide(e, ADMIN, "create", "servers:dev-1").allowed


def test_disabled_policy_is_ignored() -> None:
    assert not decide(engine(rule("Allow", "*", "*"), enabled=False), ADMIN, "read", "x:y").allowed


def test_contract_condition_user_role() -> None:
    e = engine(rule("Allow", "servers:*", "create", "read", condition="user.role == 'admin'"))
    assert decide(e, ADMIN, "create", "servers:a").allowed
    assert not decide(e, VIEWER, "create", "servers:a").allowed
    # whatever the position of the role (issue 13 item 9)
    assert decide(
        e, {"id": "x", "username": "x", "roles": ["operator", "admin"]}, "create", "servers:a"
    ).allowed


def test_condition_over_roles_list() -> None:
    e = engine(rule("Allow", "*", "read", condition="'viewer' in user.roles"))
    assert decide(e, VIEWER, "read", "servers:a").allowed
    assert not decide(e, ADMIN, "read", "servers:a").allowed


def test_condition_over_resource() -> None:
    e = engine(
        rule(
            "Allow",
            "*",
            "read",
            condition="resource.type == 'servers' && resource.id.startsWith('web-')",
        )
    )
    assert decide(e, VIEWER, "read", "servers:web-1").allowed
    assert not decide(e, VIEWER, "read", "servers:db-1").allowed
    assert not decide(e, VIEWER, "read", "clusters:web-1").allowed
    e2 = engine(rule("Allow", "*", "read", condition="resource.name == 'servers:web-1'"))
    assert decide(e2, VIEWER, "read", "servers:web-1").allowed


def test_condition_over_request() -> None:
    e = engine(
        rule(
            "Allow",
            "*",
            "*",
            condition="request.ip.startsWith('10.') && request.action == 'create'",
        )
    )
    assert decide(e, VIEWER, "create", "servers:a", {"ip": "10.0.0.5"}).allowed
    assert not decide(e, VIEWER, "create", "servers:a", {"ip": "192.168.1.1"}).allowed
    assert not decide(e, VIEWER, "read", "servers:a", {"ip": "10.0.0.5"}).allowed


def test_context_cel_cannot_hold_is_an_error_not_a_crash() -> None:
    """An integer beyond CEL's 64 bits in the request context (POST /policies/evaluate
    takes any JSON context) makes each condition an error: an erroring Deny denies, an
    erroring Allow does not allow, and nothing raises."""
    huge = {"ip": "10.0.0.5", "n": 2**70}
    allow = engine(rule("Allow", "*", "*", condition="request.ip.startsWith('10.')"))
    d = decide(allow, VIEWER, "read", "servers:a", huge)
    assert not d.allowed
    assert d.errors
    assert "context cannot be evaluated" in d.errors[0]
    deny = engine(rule("Allow", "*", "*"), rule("Deny", "*", "*", condition="request.n > 1"))
    assert not decide(deny, VIEWER, "read", "servers:a", huge).allowed
    # unconditional rules still decide
    assert decide(engine(rule("Allow", "*", "*")), VIEWER, "read", "servers:a", huge).allowed


def test_condition_over_user_identity() -> None:
    e = engine(rule("Allow", "users:*", "read", condition="resource.id == user.id"))
    assert decide(e, VIEWER, "read", "users:u2").allowed
    assert not decide(e, VIEWER, "read", "users:u1").allowed


def test_deny_condition_only_applies_when_true() -> None:
    e = engine(
        rule("Allow", "*", "*"),
        rule("Deny", "*", "*", condition="request.method == 'DELETE'"),
    )
    assert decide(e, ADMIN, "delete", "servers:a", {"method": "GET"}).allowed
    assert not decide(e, ADMIN, "delete", "servers:a", {"method": "DELETE"}).allowed


@pytest.mark.parametrize("expr", ["user.role ==", "user.role == 'admin' &&", "(((", "a b c"])
def test_compile_error_carries_message(expr: str) -> None:
    with pytest.raises(PolicyConditionError) as info:
        compile_condition(expr)
    assert str(info.value).startswith("invalid condition")
    with pytest.raises(PolicyConditionError):
        engine(rule("Allow", "*", "*", condition=expr))


def test_compile_ok() -> None:
    compile_condition("user.role == 'admin'")
    compile_condition("size(user.roles) > 0 && request.ip != ''")


def test_runtime_error_denies_and_is_reported_not_matched() -> None:
    e = engine(rule("Allow", "*", "*", condition="user.missing == 'x'"))
    d = decide(e, ADMIN, "read", "servers:a")
    assert not d.allowed
    assert d.matched == ()
    assert len(d.errors) == 1
    assert "evaluation error" in d.errors[0]


def test_runtime_error_in_deny_rule_denies_fail_closed() -> None:
    # an erroring Deny is reported, not a match, and it denies (security review)
    e = engine(rule("Allow", "*", "*"), rule("Deny", "*", "*", condition="1 / 0 == 1"))
    d = decide(e, ADMIN, "read", "servers:a")
    assert not d.allowed
    assert d.matched == ()
    assert d.errors
    assert "divide" in d.errors[0]


def test_non_boolean_condition_is_an_error() -> None:
    d = decide(engine(rule("Allow", "*", "*", condition="user.username")), ADMIN, "read", "a:b")
    assert not d.allowed
    assert "not a boolean" in d.errors[0]


def test_odd_request_values_are_accepted() -> None:
    from datetime import UTC, datetime

    e = engine(rule("Allow", "*", "*", condition="request.when != ''"))
    assert decide(e, ADMIN, "read", "a:b", {"when": datetime.now(UTC), "obj": object()}).allowed


def test_policy_from_document_shape() -> None:
    doc = {
        "id": "pid",
        "name": "new_policy",
        "version": "1.0.0",
        "enabled": True,
        "created_at": "2025-09-26T10:00:00Z",
        "rules": [
            {
                "effect": "Allow",
                "resource": "servers:*",
                "action": ["create", "read"],
                "condition": "user.role == 'admin'",
            },
            {"effect": "Deny", "resource": "*", "action": ["delete"], "condition": None},
            {"effect": "Allow", "resource": "x:*", "action": ["read"], "condition": "  "},
        ],
    }
    p = policy_from_document(doc)
    assert p.id == "pid"
    assert p.version == "1.0.0"
    assert p.enabled
    assert p.rules[0] == Rule("Allow", "servers:*", ("create", "read"), "user.role == 'admin'")
    assert p.rules[1].condition is None
    assert p.rules[2].condition is None
    assert decide(PolicyEngine([p]), ADMIN, "create", "servers:a").allowed


@pytest.mark.parametrize(
    "bad_rule",
    [
        {"effect": "allow", "resource": "*", "action": ["x"]},
        {"effect": "Allow", "resource": "", "action": ["x"]},
        {"effect": "Allow", "resource": "*", "action": []},
        {"effect": "Allow", "resource": "*", "action": [1]},
        {"effect": "Allow", "resource": "*", "action": ["x"], "condition": 5},
    ],
)
def test_policy_from_document_rejects_bad_rules(bad_rule: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="rule"):
        policy_from_document({"id": "p", "name": "n", "version": "1", "rules": [bad_rule]})


def test_resource_context() -> None:
    assert resource_context("servers:web:1") == {
        "type": "servers",
        "id": "web:1",
        "name": "servers:web:1",
    }
    assert resource_context("audit") == {"type": "audit", "id": "", "name": "audit"}


def test_decision_to_dict() -> None:
    d = decide(engine(rule("Allow", "*", "read")), ADMIN, "read", "a:b").to_dict()
    assert d["allowed"] is True
    assert d["decision"] == "Allow"
    assert d["matched_rules"][0]["policy_id"] == "p1"


# --- user.role holds for every role the user has (issue 13 item 9) -------------------------
ADMIN_OPERATOR = {"id": "u3", "username": "carol", "roles": ["admin", "operator"]}
OPERATOR = {"id": "u4", "username": "dave", "roles": ["operator"]}
NO_ROLES = {"id": "u5", "username": "erin", "roles": []}


@pytest.mark.parametrize(
    ("condition", "user", "allowed"),
    [
        ("user.role == 'operator'", ADMIN_OPERATOR, True),  # not the first role
        ("'operator' == user.role", ADMIN_OPERATOR, True),
        ("user.role == 'operator'", OPERATOR, True),
        ("user.role == 'operator'", VIEWER, False),
        ("user.role == 'operator'", NO_ROLES, False),
        ("(user.role == 'operator') && request.action == 'read'", ADMIN_OPERATOR, True),
        ("user['role'] == 'operator'", ADMIN_OPERATOR, True),
        # != means "does not hold the role", not "holds some other role"
        ("user.role != 'operator'", ADMIN_OPERATOR, False),
        ("user.role != 'operator'", VIEWER, True),
        ("!(user.role == 'operator')", ADMIN_OPERATOR, False),
        # other uses of user.role hold when they hold for one of the roles
        ("user.role in ['operator', 'auditor']", ADMIN_OPERATOR, True),
        ("user.role in ['operator', 'auditor']", VIEWER, False),
        ("user.role.startsWith('oper')", ADMIN_OPERATOR, True),
        # user.roles is the list
        ("'operator' in user.roles && size(user.roles) == 2", ADMIN_OPERATOR, True),
        # a comprehension variable called `user` is not the user
        ("[{'role': 'x'}].all(user, user.role == 'x')", VIEWER, True),
    ],
)
def test_user_role_condition_holds_for_any_role(
    condition: str, user: dict[str, Any], allowed: bool
) -> None:
    d = decide(engine(rule("Allow", "*", "read", condition=condition)), user, "read", "servers:a")
    assert d.errors == ()
    assert d.allowed is allowed, condition


def test_deny_on_user_role_applies_to_a_secondary_role() -> None:
    e = engine(
        rule("Allow", "*", "*"),
        rule("Deny", "servers:*", "delete", condition="user.role == 'operator'"),
    )
    assert not decide(e, ADMIN_OPERATOR, "delete", "servers:a").allowed
    assert decide(e, ADMIN_OPERATOR, "read", "servers:a").allowed
    assert decide(
        e, {"id": "a", "username": "a", "roles": ["admin"]}, "delete", "servers:a"
    ).allowed


# --- cost limits (issue 13 item 8) ---------------------------------------------------------
def _list(n: int) -> str:
    return "[" + ",".join(str(i) for i in range(1, n + 1)) + "]"


def _map(n: int) -> str:
    return "{" + ",".join(f"'{i}': {i}" for i in range(n)) + "}"


# under 400 characters; cel-python (no limits of its own) needs minutes for it
L20 = _list(20)
PATHOLOGICAL = f"{L20}.all(a, {L20}.all(b, {L20}.all(c, {L20}.all(d, a + b + c + d > 0))))"


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        (PATHOLOGICAL, "comprehensions (all) nested"),
        (f"{_list(9)}.exists(a, {_list(9)}.exists(b, {_list(9)}.exists(c, a == b)))", "nested 3"),
        (f"{_list(MAX_LITERAL_ITEMS + 1)}.size() > 0", "list literal"),
        (_map(MAX_LITERAL_ITEMS + 1) + ".size() > 0", "map"),
        ("(" * 40 + "true" + ")" * 40, "nested more than"),
        (f"{_list(60)}.all(a, {_list(60)}.all(b, a + b > 0))", "too expensive"),
        (
            "request.items.all(a, request.items.all(b, a.x + b.y + a.z > b.w + a.q + b.r))",
            "too expensive",
        ),
    ],
)
def test_costly_conditions_are_rejected_when_written(expr: str, message: str) -> None:
    assert len(expr) < 4096
    with pytest.raises(ConditionTooComplex) as info:
        compile_condition(expr)
    assert message in str(info.value)
    assert isinstance(info.value, PolicyConditionError)  # the control center answers 422


def test_reasonable_comprehensions_are_accepted() -> None:
    assert MAX_COMPREHENSION_NESTING == 2
    compile_condition("request.tags.exists(t, t == 'prod')")
    compile_condition("request.servers.all(s, s.tags.exists(t, t.startsWith('team-')))")
    compile_condition(f"{_list(10)}.all(a, {_list(10)}.all(b, a + b > 0))")
    compile_condition("user.role in " + str([f"r{i}" for i in range(MAX_LITERAL_ITEMS)]))


def test_stored_costly_condition_is_not_run_and_fails_closed() -> None:
    """A condition stored before the limits existed: the engine is still built (one
    policy must not disable the rest), an Allow on it never allows, a Deny denies."""
    import time

    start = time.monotonic()
    allow = engine(rule("Allow", "*", "read", condition=PATHOLOGICAL))
    d = decide(allow, ADMIN, "read", "servers:a")
    assert not d.allowed
    assert "nested" in d.errors[0]
    deny = engine(rule("Allow", "*", "read"), rule("Deny", "*", "read", condition=PATHOLOGICAL))
    d = decide(deny, ADMIN, "read", "servers:a")
    assert not d.allowed
    assert d.matched == ()
    assert "failed to evaluate" in d.reason
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("effect", ["Allow", "Deny"])
def test_evaluation_budget(effect: str) -> None:
    """Input the write-time estimate cannot see (a long list in the request): the
    evaluation stops at its budget; an Allow does not allow, a Deny denies. ``|| true``
    must not turn the interrupted evaluation into a match."""
    import time

    condition = "request.items.exists(i, i < 0) || true"
    compile_condition(condition)  # within the write-time estimate
    rules = [rule(effect, "*", "read", condition=condition)]
    if effect == "Deny":
        rules.insert(0, rule("Allow", "*", "read"))
    e = engine(*rules)
    assert decide(e, ADMIN, "read", "a:b", {"items": [1, 2, 3]}).allowed is (effect == "Allow")
    start = time.monotonic()
    d = decide(e, ADMIN, "read", "a:b", {"items": list(range(2 * MAX_EVAL_STEPS))})
    elapsed = time.monotonic() - start
    assert not d.allowed
    assert d.matched == ()
    assert "evaluation stopped" in d.errors[0]
    assert elapsed < 5  # converting the 20 000 items included; the run itself is ~0.2 s
