"""One composition root per service: the environment is read by the settings modules
only, ``Settings.from_env()`` builds every feature's typed settings once, and
``create_app`` builds the container without opening anything (it starts with the app)."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from control_center.app import create_app as create_control_center
from control_center.deps import CONTAINER as CC_CONTAINER
from control_center.settings import Settings as CCSettings
from orchestrator.app import FEATURES
from orchestrator.app import create_app as create_orchestrator
from orchestrator.deps import CONTAINER as ORCH_CONTAINER
from orchestrator.settings import Settings as OrchSettings

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    ROOT / "libs" / "common" / "src",
    ROOT / "services" / "orchestrator" / "src",
    ROOT / "services" / "control_center" / "src",
]
ENV_READ = re.compile(r"\bos\.(environ|getenv)\b|\bgetenv\(")
# Where reading the process environment belongs.
ALLOWED = {
    "provisioning_common/config.py",  # EnvReader: the one reader, called by settings
    "orchestrator/settings.py",  # the CLI's environment is taken from the process's
    # The engine's fallback when it is not given an environment (the container always
    # gives it one, from the settings).
    "orchestrator/engine/engine.py",
}


def _sources() -> list[Path]:
    return [path for base in SOURCES for path in base.rglob("*.py")]


def test_no_environment_reads_outside_the_settings() -> None:
    offenders = []
    for path in _sources():
        rel = path.relative_to(next(b for b in SOURCES if path.is_relative_to(b))).as_posix()
        if rel in ALLOWED:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if ENV_READ.search(line):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert offenders == []


@pytest.mark.parametrize("settings_type", [OrchSettings, CCSettings])
def test_settings_are_frozen_and_typed_all_the_way_down(settings_type: type) -> None:
    settings = settings_type.from_env({})
    assert dataclasses.is_dataclass(settings)
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        assert dataclasses.is_dataclass(value), field.name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, dataclasses.fields(value)[0].name, None)


def test_orchestrator_settings_give_the_engine_a_filtered_environment() -> None:
    engine = OrchSettings.from_env({}).engine
    assert engine.child_env is not None
    for name in engine.child_env:
        assert name in engine.env_allowlist or name.startswith(engine.env_prefixes), name
    assert "MONGODB_URL" not in engine.child_env


async def test_create_app_builds_the_container_without_starting_it() -> None:
    orch = create_orchestrator(OrchSettings.from_env({}))
    cc = create_control_center(CCSettings.from_env({}))
    assert not orch[ORCH_CONTAINER].started
    assert not cc[CC_CONTAINER].started
    assert orch[ORCH_CONTAINER].settings.common.service == "orchestrator"


def test_every_feature_takes_the_app_and_the_container() -> None:
    for feature in FEATURES:
        assert list(inspect.signature(feature).parameters) == ["app", "container"]
