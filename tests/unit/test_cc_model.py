"""Pure rules of the control center: passwords, TOTP steps, lockout growth, key ids,
secret sealing, audit scrubbing, settings and policy normalisation."""

from __future__ import annotations

import time
from pathlib import Path

import pyotp
import pytest
from cryptography.fernet import Fernet

from control_center.audit.model import AuditRecord, from_document, scrub
from control_center.auth.model import SecretBox, lockout_seconds, totp_timestep
from control_center.keys.model import generate_private_pem, material_from_pem
from control_center.policies.model import DEFAULT_POLICIES, normalise_rules
from control_center.settings import Settings, parse_service_clients
from control_center.users.model import password_problems
from control_center.users.schemas import UserOut
from provisioning_common.config import ConfigError
from provisioning_common.errors import UnprocessableEntity
from provisioning_common.policy import PolicyEngine, policy_from_document


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("secure_password", True),
        ("Correct-Horse-1", True),
        ("short1A", False),
        ("alllowercaseletters", False),
        (" Leading-space1", False),
        ("Aa1-" + "x" * 66, True),  # 70 bytes
        ("Aa1-" + "x" * 69, False),  # 73 bytes
        ("Ünïcödé-pässwörd" * 3, True),  # 48 characters, 69 bytes
        ("Ünïcödé-pässwörd" * 4, False),  # 64 characters, 92 bytes
    ],
)
def test_password_policy(password: str, ok: bool) -> None:
    assert (password_problems(password, 10) == []) is ok


def test_public_user_never_carries_secrets() -> None:
    doc = {
        "_id": "u1",
        "username": "a",
        "email": "a@b.co",
        "roles": ["viewer"],
        "password_hash": "$2b$...",
        "mfa_secret": "sealed",
        "mfa_pending": "sealed",
    }
    view = UserOut().dump(doc)
    assert "password_hash" not in view
    assert "mfa_secret" not in view
    assert "sealed" not in str(view)


def test_totp_steps_with_drift_only_one_step() -> None:
    secret = pyotp.random_base32()
    totp = pyotp.TOTP(secret)
    now = time.time()
    step = int(now // 30)
    assert totp_timestep(secret, totp.at(now), now) == step
    assert totp_timestep(secret, totp.at(now - 30), now) == step - 1
    assert totp_timestep(secret, totp.at(now + 30), now) == step + 1
    assert totp_timestep(secret, totp.at(now - 90), now) is None
    assert totp_timestep(secret, totp.at(now + 90), now) is None
    assert totp_timestep(secret, "abcdef", now) is None
    assert totp_timestep(secret, "12345", now) is None


def test_lockout_doubles_and_caps() -> None:
    assert [lockout_seconds(n, 60, 600) for n in range(6)] == [60, 120, 240, 480, 600, 600]
    assert lockout_seconds(10_000, 1, 5) == 5


def test_secret_box_round_trip_and_tamper() -> None:
    box = SecretBox(Fernet.generate_key())
    sealed = box.seal("JBSWY3DPEHPK3PXP")
    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert box.open(sealed) == "JBSWY3DPEHPK3PXP"
    assert box.open(sealed[:-4] + "AAAA") is None
    assert SecretBox(Fernet.generate_key()).open(sealed) is None


def test_key_material_kid_is_a_stable_thumbprint() -> None:
    pem = generate_private_pem()
    a, b = material_from_pem(pem), material_from_pem(pem)
    assert a.kid == b.kid
    assert len(a.kid) == 43  # base64url SHA-256
    assert a.public_jwk["alg"] == "RS256"
    public = material_from_pem(a.public_pem)
    assert public.kid == a.kid
    assert public.private_pem is None
    assert material_from_pem(generate_private_pem()).kid != a.kid


def test_audit_details_are_scrubbed_and_safe_for_mongo() -> None:
    assert scrub({"password": "x", "nested": {"client_secret": "y", "ok": [{"token": 1}]}}) == {
        "password": "[redacted]",
        "nested": {"client_secret": "[redacted]", "ok": [{"token": "[redacted]"}]},
    }
    doc = AuditRecord(
        action="a", resource="r", result="success", details={"a.b": 1, "$x": 2}
    ).to_document()
    assert all("." not in k and not k.startswith("$") for k in doc)
    assert from_document(doc)["details"] == {"a.b": 1, "$x": 2}


def test_service_clients_parsing() -> None:
    assert parse_service_clients(["orch:0123456789abcdef", "b:secret:with:colons-xx"]) == {
        "orch": "0123456789abcdef",
        "b": "secret:with:colons-xx",
    }
    for bad in (["nocolon"], ["a:short"], [":0123456789abcdef"]):
        with pytest.raises(ConfigError):
            parse_service_clients(bad)


def test_settings_from_env(tmp_path: Path) -> None:
    pem = generate_private_pem()
    key_file = tmp_path / "key.pem"
    key_file.write_text(pem)
    s = Settings.from_env(
        {
            "BCRYPT_ROUNDS": "4",
            "JWT_PRIVATE_KEY_FILE": str(key_file),
            "SERVICE_CLIENTS": "orchestrator:0123456789abcdef",
        }
    )
    assert s.auth.bcrypt_rounds == 4
    assert s.auth.private_key_pem == pem
    assert s.common.port == 9080
    assert Settings.from_env({}).auth.bcrypt_rounds == 12
    for env in (
        {"BCRYPT_ROUNDS": "3"},
        {"JWT_PRIVATE_KEY": "not a pem"},
        {"JWT_PRIVATE_KEY": pem, "JWT_PRIVATE_KEY_FILE": str(key_file)},
        {"JWT_PRIVATE_KEY_FILE": str(tmp_path / "missing.pem")},
        {"BOOTSTRAP_ADMIN_PASSWORD": "admin"},
    ):
        with pytest.raises(ConfigError):
            Settings.from_env(env)


def test_normalise_rules_reports_compiler_message() -> None:
    rules = [
        {"effect": "Allow", "resource": "*", "action": ["read"], "condition": "  "},
        {"effect": "Deny", "resource": "*", "action": ["x"], "condition": "user.role ==  "},
    ]
    with pytest.raises(UnprocessableEntity) as info:
        normalise_rules(rules)
    assert info.value.message.startswith("Rule 1: invalid condition")
    assert normalise_rules(rules[:1])[0]["condition"] is None


def test_default_policies_compile_and_grant_as_documented() -> None:
    engine = PolicyEngine(policy_from_document({**d, "id": d["_id"]}) for d in DEFAULT_POLICIES)

    def allowed(role: str, action: str, resource: str) -> bool:
        return engine.evaluate(
            user={"id": "u", "username": "u", "roles": [role]}, action=action, resource=resource
        ).allowed

    assert allowed("admin", "delete", "webhooks:x")
    assert allowed("operator", "create", "servers:web")
    assert allowed("operator", "execute", "rollback:*")
    assert not allowed("operator", "read", "webhooks:*")
    assert allowed("viewer", "read", "batches:1")
    assert not allowed("viewer", "cancel", "tasks:1")
    assert allowed("auditor", "read", "audit:logs")
    assert not allowed("auditor", "create", "servers:web")
    assert not allowed("nobody", "read", "servers:web")
