"""``compose.yaml`` against the Compose specification's JSON schema (vendored in
``tests/data/compose-spec.json``, from the compose-go module), plus the rules the
deployment promises: healthchecks and health-gated start order, secrets only from the
env file, the simulator only in the dev profile, named volumes, hardened services."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
SCHEMA = ROOT / "tests/data/compose-spec.json"
ENV_EXAMPLE = ROOT / "deploy/env.example"
APPS = ("control-center", "orchestrator")
# Go's time.ParseDuration syntax, which compose-go registers as the "duration" format.
_GO_DURATION = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?(?:ns|us|µs|ms|s|m|h))+$|^0$")
_VAR = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


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
    for line in example.splitlines():
        if line.startswith(("BOOTSTRAP_ADMIN_PASSWORD=", "SERVICE_CLIENT_SECRET=")):
            assert line.endswith("="), "no secret value ships"


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
