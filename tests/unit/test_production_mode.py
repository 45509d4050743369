"""Production mode (``PROVISIONING_ENV=production``, the container images' default):
a service refuses to start without the secrets it would otherwise generate or default
(the control center's signing and MFA keys, the orchestrator's service-client secret,
the storage URLs), with one message naming every missing variable and exit code 2.
Development (the default for ``make run`` and the tests) keeps generating them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from control_center.keys.model import generate_private_pem
from control_center.settings import Settings as CCSettings
from orchestrator.settings import Settings as OrchSettings
from provisioning_common.config import ConfigError

STORAGE = {
    "MONGODB_URL": "mongodb://control_center:pw@mongodb:27017/provisioning_control_center",
    "REDIS_URL": "redis://control_center:pw@redis:6379/0",
}
PROD = {"PROVISIONING_ENV": "production"}
SECRET = "0123456789abcdef-secret"


@pytest.fixture(scope="module")
def pem() -> str:
    return generate_private_pem()


def cc_env(pem: str) -> dict[str, str]:
    return {
        **PROD,
        **STORAGE,
        "JWT_PRIVATE_KEY": pem,
        "MFA_ENCRYPTION_KEY": Fernet.generate_key().decode("ascii"),
    }


def orch_env() -> dict[str, str]:
    return {
        **PROD,
        **STORAGE,
        "CONTROL_CENTER_URL": "http://control-center:9080",
        "SERVICE_CLIENT_SECRET": SECRET,
    }


def test_development_is_the_default_and_needs_no_secret() -> None:
    cc = CCSettings.from_env({})
    assert cc.common.environment == "development"
    assert not cc.common.production
    assert cc.auth.private_key_pem is None  # generated and kept in MongoDB
    assert cc.auth.mfa_encryption_key is None
    assert not OrchSettings.from_env({}).common.production


def test_an_unknown_environment_is_refused() -> None:
    with pytest.raises(ConfigError, match="PROVISIONING_ENV must be development or production"):
        CCSettings.from_env({"PROVISIONING_ENV": "prod"})


def test_control_center_refuses_production_without_its_keys() -> None:
    with pytest.raises(ConfigError) as info:
        CCSettings.from_env({**PROD, **STORAGE})
    message = str(info.value)
    assert "PROVISIONING_ENV=production requires" in message
    assert "JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE" in message
    assert "MFA_ENCRYPTION_KEY" in message
    assert "MONGODB_URL" not in message  # given


@pytest.mark.parametrize("missing", ["JWT_PRIVATE_KEY", "MFA_ENCRYPTION_KEY"])
def test_control_center_refuses_production_without_either_key(pem: str, missing: str) -> None:
    env = cc_env(pem)
    del env[missing]
    with pytest.raises(ConfigError, match=f"requires {missing}"):
        CCSettings.from_env(env)


def test_production_requires_the_storage_urls(pem: str) -> None:
    env = cc_env(pem)
    del env["MONGODB_URL"], env["REDIS_URL"]
    with pytest.raises(ConfigError, match="requires MONGODB_URL, REDIS_URL "):
        CCSettings.from_env(env)


def test_control_center_accepts_production_with_its_keys(pem: str, tmp_path: Path) -> None:
    s = CCSettings.from_env(cc_env(pem))
    assert s.common.production
    assert s.auth.private_key_pem == pem
    assert s.auth.mfa_encryption_key
    # the key from a mounted file (the Kubernetes prod overlay) counts as well
    key_file = tmp_path / "private.pem"
    key_file.write_text(pem)
    env = cc_env(pem)
    del env["JWT_PRIVATE_KEY"]
    env["JWT_PRIVATE_KEY_FILE"] = str(key_file)
    assert CCSettings.from_env(env).auth.private_key_pem == pem


def test_an_empty_key_file_or_a_bad_mfa_key_is_a_config_error(pem: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    env = cc_env(pem)
    del env["JWT_PRIVATE_KEY"]
    env["JWT_PRIVATE_KEY_FILE"] = str(empty)
    with pytest.raises(ConfigError, match="is empty"):
        CCSettings.from_env(env)
    with pytest.raises(ConfigError, match="MFA_ENCRYPTION_KEY must be a Fernet key"):
        CCSettings.from_env({**cc_env(pem), "MFA_ENCRYPTION_KEY": "not-a-fernet-key"})


def test_orchestrator_refuses_production_without_its_secret() -> None:
    with pytest.raises(ConfigError) as info:
        OrchSettings.from_env({**PROD})
    message = str(info.value)
    for name in ("MONGODB_URL", "REDIS_URL", "CONTROL_CENTER_URL", "SERVICE_CLIENT_SECRET"):
        assert name in message
    env = orch_env()
    del env["SERVICE_CLIENT_SECRET"]
    with pytest.raises(ConfigError, match="requires SERVICE_CLIENT_SECRET"):
        OrchSettings.from_env(env)
    with pytest.raises(ConfigError, match="16"):
        OrchSettings.from_env({**orch_env(), "SERVICE_CLIENT_SECRET": "short"})


def test_orchestrator_accepts_production_with_its_secret() -> None:
    assert OrchSettings.from_env(orch_env()).common.production


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("control_center", ["JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE", "MFA_ENCRYPTION_KEY"]),
        ("orchestrator", ["SERVICE_CLIENT_SECRET", "CONTROL_CENTER_URL"]),
    ],
)
def test_the_process_exits_2_naming_the_missing_variables(module: str, names: list[str]) -> None:
    """The real entry point (``python -m``): exit 2 and the message, before any connection."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update({**PROD, **STORAGE})
    result = subprocess.run(
        [sys.executable, "-m", module],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert f"{module}: configuration error: PROVISIONING_ENV=production requires" in result.stderr
    for name in names:
        assert name in result.stderr
