"""``compose.yaml`` against the Compose specification's JSON schema (vendored in
``tests/data/compose-spec.json``, from the compose-go module), plus the rules the
deployment promises: healthchecks and health-gated start order, secrets only from the
env file, the simulator only in the dev profile, named volumes, hardened services."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from control_center.settings import PRODUCTION_SECRETS as CC_SECRETS
from orchestrator.settings import PRODUCTION_SECRETS as ORCH_SECRETS
from provisioning_common.config import PRODUCTION_STORAGE

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
SCHEMA = ROOT / "tests/data/compose-spec.json"
ENV_EXAMPLE = ROOT / "deploy/env.example"
APPS = ("control-center", "orchestrator")
# Go's time.ParseDuration syntax, which compose-go registers as the "duration" format.
_GO_DURATION = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?(?:ns|us|µs|ms|s|m|h))+$|^0$")
_VAR = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")
# Each service's own MongoDB user (readWrite on its own database) and Redis ACL user.
USERS = {
    "control-center": ("control_center", "provisioning_control_center", "CONTROL_CENTER"),
    "orchestrator": ("orchestrator", "provisioning_orchestrator", "ORCHESTRATOR"),
}
SECRETS = (
    "BOOTSTRAP_ADMIN_PASSWORD",
    "SERVICE_CLIENT_SECRET",
    "JWT_PRIVATE_KEY",
    "MFA_ENCRYPTION_KEY",
    "MONGO_ROOT_PASSWORD",
    "MONGO_CONTROL_CENTER_PASSWORD",
    "MONGO_ORCHESTRATOR_PASSWORD",
    "REDIS_CONTROL_CENTER_PASSWORD",
    "REDIS_ORCHESTRATOR_PASSWORD",
)


def required_variable(value: str) -> str:
    """The variable of a ``${NAME:?message}`` value: compose refuses to start without it."""
    match = re.fullmatch(r"\$\{([A-Z_][A-Z0-9_]*):\?[^}]*\}", value)
    assert match, f"{value!r} is not a required variable"
    return match.group(1)


def interpolate(value: str) -> str:
    """``${NAME...}`` replaced by ``<NAME>``, as compose would with the .env values."""
    return _VAR.sub(lambda m: f"<{m.group(1)}>", value)


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@functools.cache
def schema_validator() -> jsonschema.protocols.Validator:
    import json

    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    errors = sorted(schema_validator().iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_rejects_what_it_should(compose: dict[str, Any]) -> None:
    """The validator is live: wrong types and unknown keys fail."""
    validator = schema_validator()
    broken = load_compose()
    broken["services"]["redis"]["healthcheck"]["intervall"] = "5s"
    assert not validator.is_valid(broken)
    broken = load_compose()
    broken["services"]["redis"]["depends_on"] = {"mongodb": {"condition": 1}}
    assert not validator.is_valid(broken)
    broken = load_compose()
    broken["services"]["redis"]["restart_policy"] = "always"
    assert not validator.is_valid(broken)
    broken = load_compose()
    broken["services"]["redis"]["ports"] = {"6379": 6379}
    assert not validator.is_valid(broken)


def test_mongodb_is_a_replica_set_initialised_by_a_gated_one_shot(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mongo = services["mongodb"]
    assert re.match(r"^mongo:7\.\d+\.\d+$", mongo["image"])
    assert "--replSet" in mongo["command"]
    assert "ping" in " ".join(mongo["healthcheck"]["test"])
    init = services["mongodb-init"]
    assert init["depends_on"]["mongodb"]["condition"] == "service_healthy"
    assert init["restart"] == "no"
    script = " ".join(init["command"])
    assert "rs.initiate" in script
    assert "isWritablePrimary" in script
    for name in APPS:
        deps = services[name]["depends_on"]
        assert deps["mongodb-init"]["condition"] == "service_completed_successfully"
        assert "replicaSet=rs0" in services[name]["environment"]["MONGODB_URL"]


def test_redis_7(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert re.match(r"^redis:7\.\d+\.\d+", redis["image"])
    assert redis["healthcheck"]["test"][-1] == "ping"


def test_every_long_running_service_has_a_healthcheck_and_gated_dependencies(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    one_shots = {name for name, s in services.items() if s.get("restart") == "no"}
    assert one_shots == {"mongodb-init", "cli-simulator"}
    for name, service in services.items():
        if name not in one_shots:
            assert "healthcheck" in service, name
        for dep, rule in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dep in one_shots else "service_healthy"
            assert rule["condition"] == expected, (name, dep)
    orch = services["orchestrator"]["depends_on"]
    assert orch["control-center"]["condition"] == "service_healthy"
    assert orch["redis"]["condition"] == "service_healthy"


def test_the_simulator_is_only_in_the_dev_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        target = (service.get("build") or {}).get("target")
        mentions_sim = "provisioning-dev" in yaml.safe_dump(service) or target == "dev"
        if mentions_sim:
            assert service.get("profiles") == ["dev"], name
        else:
            assert "profiles" not in service, name
    assert services["orchestrator"]["build"]["target"] == "production"
    # Without the dev profile the orchestrator must still start.
    assert services["orchestrator"]["depends_on"]["cli-simulator"]["required"] is False


def test_secrets_come_from_the_env_file_and_are_required(compose: dict[str, Any]) -> None:
    env_cc = compose["services"]["control-center"]["environment"]
    env_orch = compose["services"]["orchestrator"]["environment"]
    assert env_cc["BOOTSTRAP_ADMIN_PASSWORD"].startswith("${BOOTSTRAP_ADMIN_PASSWORD:?")
    assert env_cc["SERVICE_CLIENTS"].startswith("orchestrator:${SERVICE_CLIENT_SECRET:?")
    assert env_orch["SERVICE_CLIENT_SECRET"].startswith("${SERVICE_CLIENT_SECRET:?")
    assert env_orch["SERVICE_CLIENT_ID"] == "orchestrator"
    assert env_orch["CONTROL_CENTER_URL"] == "http://control-center:9080"


def test_env_example_documents_every_variable_and_holds_no_secret() -> None:
    text = COMPOSE.read_text()
    used = set(_VAR.findall(text))
    example = ENV_EXAMPLE.read_text()
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", example, re.MULTILINE))
    assert used <= documented, used - documented
    for name in SECRETS:
        assert f"\n{name}=\n" in example, f"{name}: documented, and no secret value ships"


def test_named_volumes_are_declared_and_used(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used: set[str] = set()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert not source.startswith(("/", ".")), "named volumes only, no bind mounts"
            used.add(source)
    assert used == declared
    assert "mongodb-data" in declared


def test_application_services_are_hardened(compose: dict[str, Any]) -> None:
    for name in APPS:
        service = compose["services"][name]
        assert service["read_only"] is True
        assert any(t.split(":")[0] == "/tmp" for t in service["tmpfs"])  # noqa: S108
        uid = service["user"].split(":")[0]
        assert uid.isdigit()
        assert int(uid) != 0
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        env = service["environment"]
        budget = sum(
            int(env.get(k, 0))
            for k in (
                "SHUTDOWN_GRACE_SECONDS",
                "ENGINE_SHUTDOWN_GRACE_SECONDS",
                "TASK_KILL_GRACE_SECONDS",
            )
        )
        assert "SHUTDOWN_GRACE_SECONDS" in env
        assert int(service["stop_grace_period"].rstrip("s")) > budget
        assert service["stop_signal"] == "SIGTERM"
        for port in service["ports"]:
            assert port.startswith("127.0.0.1:"), "published on the loopback only"
        assert "/ready" in " ".join(service["healthcheck"]["test"])


def test_durations_use_go_syntax(compose: dict[str, Any]) -> None:
    """The schema leaves durations as plain strings; compose parses them as Go durations."""
    for name, service in compose["services"].items():
        check = service.get("healthcheck", {})
        values = [check.get(k) for k in ("interval", "timeout", "start_period")]
        values.append(service.get("stop_grace_period"))
        for value in values:
            if value is not None:
                assert _GO_DURATION.match(value), (name, value)


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        assert ":" in image, name
        assert not image.endswith(":latest"), name


def test_mongodb_requires_authentication(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mongo = services["mongodb"]
    env = mongo["environment"]
    assert env["MONGO_INITDB_ROOT_USERNAME"] == "root"
    assert required_variable(env["MONGO_INITDB_ROOT_PASSWORD"]) == "MONGO_ROOT_PASSWORD"
    # access control on a replica set: a key file, made before the image's entrypoint runs
    command = mongo["command"]
    keyfile = command[command.index("--keyFile") + 1]
    prepare = " ".join(mongo["entrypoint"])
    assert f"> {keyfile}" in prepare
    assert f"chmod 0400 {keyfile}" in prepare
    assert 'exec docker-entrypoint.sh "$$@"' in prepare
    init = services["mongodb-init"]
    script = " ".join(init["command"])
    assert 'auth("root", process.env.MONGO_ROOT_PASSWORD)' in script
    assert script.index(".auth(") < script.index("rs.initiate")
    assert required_variable(init["environment"]["MONGO_ROOT_PASSWORD"]) == "MONGO_ROOT_PASSWORD"


def test_redis_requires_authentication(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["command"][:2] == ["redis-server", "-"], "ACL configuration on stdin"
    config = redis["entrypoint"][2]
    users = {
        line.split()[1]: line.split()[2:]
        for line in config.splitlines()
        if line.startswith("user ")
    }
    # without a password, only PING (the healthcheck): no key, no channel, no command
    assert users["default"] == ["on", "nopass", "resetchannels", "-@all", "+ping"]
    for app, (user, _, suffix) in USERS.items():
        rules = users[user]
        assert "nopass" not in rules, app
        assert f">$${{REDIS_{suffix}_PASSWORD}}" in rules, app
        assert {"-@admin", "-@dangerous"} <= set(rules), app
        variable = required_variable(redis["environment"][f"REDIS_{suffix}_PASSWORD"])
        assert variable == f"REDIS_{suffix}_PASSWORD"
    assert set(users) == {"default"} | {u for u, _, _ in USERS.values()}


def test_each_service_has_its_own_database_user(compose: dict[str, Any]) -> None:
    services = compose["services"]
    init_script = " ".join(services["mongodb-init"]["command"])
    init_env = services["mongodb-init"]["environment"]
    assert 'const roles = [{role: "readWrite", db: name}]' in init_script
    seen: set[str] = set()
    for app, (user, database, suffix) in USERS.items():
        env = services[app]["environment"]
        mongo = urlsplit(interpolate(env["MONGODB_URL"]))
        assert (mongo.scheme, mongo.hostname, mongo.port) == ("mongodb", "mongodb", 27017)
        assert mongo.username == user
        assert mongo.password == f"<MONGO_{suffix}_PASSWORD>"
        # the user lives in (authenticates against) its own database
        assert mongo.path == f"/{database}"
        assert f'["{user}", "{database}", "MONGO_{suffix}_PASSWORD"]' in init_script
        assert required_variable(init_env[f"MONGO_{suffix}_PASSWORD"]) == f"MONGO_{suffix}_PASSWORD"
        redis = urlsplit(interpolate(env["REDIS_URL"]))
        assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)
        assert redis.username == user
        assert redis.password == f"<REDIS_{suffix}_PASSWORD>"
        seen.add(user)
    assert len(seen) == len(USERS), "no shared user"


@pytest.mark.parametrize(
    ("app", "required"),
    [("control-center", CC_SECRETS), ("orchestrator", ORCH_SECRETS)],
)
def test_compose_gives_what_production_mode_requires(
    compose: dict[str, Any], app: str, required: tuple[str | tuple[str, ...], ...]
) -> None:
    """The images run with PROVISIONING_ENV=production: compose sets every variable that
    requires, each from .env (compose refuses to start without it), or a fixed value."""
    env = compose["services"][app]["environment"]
    assert "PROVISIONING_ENV" not in env, "the image's production default applies"
    for item in (*PRODUCTION_STORAGE, *required):
        names = (item,) if isinstance(item, str) else item
        given = [n for n in names if n in env]
        assert given, f"{app}: none of {names}"
        value = str(env[given[0]])
        assert value, f"{app}: {given[0]} is empty"
        assert "${" not in value or ":?" in value, f"{app}: {given[0]} is optional"
    if app == "control-center":
        assert required_variable(env["JWT_PRIVATE_KEY"]) == "JWT_PRIVATE_KEY"
        assert required_variable(env["MFA_ENCRYPTION_KEY"]) == "MFA_ENCRYPTION_KEY"
