"""Control center settings, read once at start-up (a bad value stops the service)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet

from provisioning_common.config import CommonSettings, ConfigError, EnvReader, Requirement

from .users.model import password_problems

# Without these the service would generate its signing key and MFA encryption key and
# keep them in MongoDB next to the data they protect: fine on a laptop, refused in
# production (PROVISIONING_ENV=production, the container images' default).
PRODUCTION_SECRETS: tuple[Requirement, ...] = (
    ("JWT_PRIVATE_KEY", "JWT_PRIVATE_KEY_FILE"),
    "MFA_ENCRYPTION_KEY",
)


@dataclass(frozen=True)
class AuthSettings:
    bcrypt_rounds: int = 12
    issuer: str = "provisioning-control-center"
    audience: str = "provisioning"
    access_ttl: int = 3600
    refresh_ttl: int = 43200
    session_max: int = 43200  # absolute lifetime of a login, refreshes included
    service_ttl: int = 900
    service_clients: Mapping[str, str] = field(default_factory=dict)
    private_key_pem: str | None = None  # from env / mounted secret; else stored in MongoDB
    previous_key_pems: tuple[str, ...] = ()
    key_refresh_seconds: int = 30
    failure_limit: int = 5  # per account and source address
    account_failure_limit: int = 20  # per account, from addresses it never logged in from
    known_address_days: int = 30
    failure_window: int = 900
    lockout_base: int = 60
    lockout_max: int = 3600
    mfa_issuer: str = "Provisioning"
    mfa_encryption_key: str | None = None
    password_min_length: int = 10
    bootstrap_admin_password: str | None = None
    bootstrap_admin_email: str = "admin@example.com"
    bootstrap_admin_unlock: bool = False  # break-glass: lift admin's lockouts at start
    service_rate_per_minute: int = 6000


@dataclass(frozen=True)
class AuditChainSettings:
    """The tamper-evident audit chain: its head is signed (a checkpoint) once
    ``checkpoint_records`` records were chained since the last checkpoint, or, when
    anything was chained, every ``checkpoint_seconds``; records chained after the
    newest checkpoint are not yet protected against truncation."""

    checkpoint_records: int = 1000  # AUDIT_CHECKPOINT_RECORDS
    checkpoint_seconds: float = 60.0  # AUDIT_CHECKPOINT_SECONDS
    page_size: int = 200  # AUDIT_VERIFY_PAGE_SIZE: point reads per page of /audit/verify


@dataclass(frozen=True)
class Settings:
    common: CommonSettings
    auth: AuthSettings = field(default_factory=AuthSettings)
    audit_chain: AuditChainSettings = field(default_factory=AuditChainSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        reader = EnvReader(env)
        common = CommonSettings.from_env(
            reader,
            service="control_center",
            default_port=9080,
            default_database="provisioning_control_center",
            production_requires=PRODUCTION_SECRETS,
        )
        return cls(
            common=common, auth=_auth_settings(reader), audit_chain=_audit_chain_settings(reader)
        )


def _audit_chain_settings(reader: EnvReader) -> AuditChainSettings:
    return AuditChainSettings(
        checkpoint_records=reader.int("AUDIT_CHECKPOINT_RECORDS", 1000, low=1, high=1_000_000),
        checkpoint_seconds=reader.float("AUDIT_CHECKPOINT_SECONDS", 60.0, low=0.1),
        page_size=reader.int("AUDIT_VERIFY_PAGE_SIZE", 200, low=1, high=1000),
    )


def _read_pem(reader: EnvReader, name: str) -> str | None:
    """PEM text from ``NAME`` or from the file named by ``NAME_FILE`` (a mounted secret)."""
    text = reader.optional(name)
    path = reader.optional(f"{name}_FILE")
    if text and path:
        raise ConfigError(f"set either {name} or {name}_FILE, not both")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from exc
        if not text.strip():
            raise ConfigError(f"{name}_FILE: {path} is empty")
    if text and "-----BEGIN" not in text:
        raise ConfigError(f"{name} must be a PEM-encoded key")
    return text


def _mfa_key(reader: EnvReader) -> str | None:
    key = reader.optional("MFA_ENCRYPTION_KEY")
    if key is not None:
        try:
            Fernet(key.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise ConfigError(
                "MFA_ENCRYPTION_KEY must be a Fernet key (32 random bytes, url-safe base64)"
            ) from exc
    return key


def parse_service_clients(raw: list[str]) -> dict[str, str]:
    clients: dict[str, str] = {}
    for item in raw:
        client_id, sep, secret = item.partition(":")
        if not sep or not client_id.strip() or len(secret) < 16:
            raise ConfigError(
                "SERVICE_CLIENTS must be 'id:secret[,id2:secret2]' with secrets of 16+ characters"
            )
        clients[client_id.strip()] = secret
    return clients


def _bootstrap_password(reader: EnvReader, min_length: int) -> str | None:
    password = reader.optional("BOOTSTRAP_ADMIN_PASSWORD")
    if password is not None:
        problems = password_problems(password, min_length)
        if problems:
            raise ConfigError(f"BOOTSTRAP_ADMIN_PASSWORD: {problems[0]}")
    return password


def _auth_settings(reader: EnvReader) -> AuthSettings:
    previous: list[str] = []
    for path in reader.list("JWT_PREVIOUS_KEY_FILES"):
        try:
            previous.append(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"JWT_PREVIOUS_KEY_FILES: cannot read {path}") from exc
    access_ttl = reader.int("ACCESS_TOKEN_TTL_SECONDS", 3600, low=1, high=86400)
    session_max = reader.int("SESSION_MAX_SECONDS", 43200, low=1)
    min_length = reader.int("PASSWORD_MIN_LENGTH", 10, low=8, high=64)
    failure_limit = reader.int("LOGIN_FAILURE_LIMIT", 5, low=1, high=1000)
    return AuthSettings(
        bcrypt_rounds=reader.int("BCRYPT_ROUNDS", 12, low=4, high=16),
        issuer=reader.str("JWT_ISSUER", "provisioning-control-center"),
        audience=reader.str("JWT_AUDIENCE", "provisioning"),
        access_ttl=access_ttl,
        refresh_ttl=reader.int("REFRESH_TOKEN_TTL_SECONDS", 43200, low=1),
        session_max=session_max,
        service_ttl=reader.int("SERVICE_TOKEN_TTL_SECONDS", 900, low=5, high=86400),
        service_clients=parse_service_clients(reader.list("SERVICE_CLIENTS")),
        private_key_pem=_read_pem(reader, "JWT_PRIVATE_KEY"),
        previous_key_pems=tuple(previous),
        key_refresh_seconds=reader.int("JWT_KEY_REFRESH_SECONDS", 30, low=1),
        failure_limit=failure_limit,
        account_failure_limit=reader.int(
            "ACCOUNT_LOGIN_FAILURE_LIMIT", 4 * failure_limit, low=1, high=4000
        ),
        known_address_days=reader.int("LOGIN_KNOWN_ADDRESS_DAYS", 30, low=0, high=365),
        failure_window=reader.int("LOGIN_FAILURE_WINDOW_SECONDS", 900, low=1),
        lockout_base=reader.int("LOCKOUT_BASE_SECONDS", 60, low=1),
        lockout_max=reader.int("LOCKOUT_MAX_SECONDS", 3600, low=1),
        mfa_issuer=reader.str("MFA_ISSUER", "Provisioning"),
        mfa_encryption_key=_mfa_key(reader),
        password_min_length=min_length,
        bootstrap_admin_password=_bootstrap_password(reader, min_length),
        bootstrap_admin_email=reader.str("BOOTSTRAP_ADMIN_EMAIL", "admin@example.com"),
        bootstrap_admin_unlock=reader.bool("BOOTSTRAP_ADMIN_UNLOCK", False),
        service_rate_per_minute=reader.int("RATE_LIMIT_SERVICE_PER_MINUTE", 6000, low=1),
    )
