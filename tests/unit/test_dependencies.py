"""Reproducible, audited dependencies: ``constraints.txt`` pins every third-party
package exactly, ``devstack.ensure_venv`` installs with it (and again when it changes),
the floors are past the known advisories, and ``make lint`` runs pip-audit on it with
documented exceptions only."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.stack import ROOT, devstack

CONSTRAINTS = ROOT / "constraints.txt"
PYPROJECTS = [ROOT / "pyproject.toml"] + [ROOT / p / "pyproject.toml" for p in devstack.PACKAGES]
# Floors past known advisories: (package, pyproject, first fixed version, a vulnerable one).
FLOORS = [
    ("aiohttp", "libs/common", "3.12.14", "3.12.13"),  # GHSA-9548-qrrj-x5pj
    ("aiohttp", "libs/client", "3.12.14", "3.12.13"),
    ("cryptography", "services/control_center", "44.0.1", "44.0.0"),  # GHSA-79v4-65xg-pq4g
    ("cryptography", "libs/common", "44.0.1", "43.0.3"),
]


def pins() -> dict[str, Version]:
    result: dict[str, Version] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"not an exact pin: {line!r}"
        result[canonicalize_name(name)] = Version(version)
    return result


def requirements(path: Path) -> list[Requirement]:
    data: dict[str, Any] = tomllib.loads(path.read_text())
    raw = list(data.get("project", {}).get("dependencies", []))
    for group in data.get("dependency-groups", {}).values():
        raw += [r for r in group if isinstance(r, str)]
    return [Requirement(r) for r in raw]


def test_constraints_pin_every_third_party_requirement_exactly() -> None:
    pinned = pins()
    assert not any(name.startswith("provisioning-") for name in pinned), "our own packages"
    for path in PYPROJECTS:
        for req in requirements(path):
            name = canonicalize_name(req.name)
            if name.startswith("provisioning-"):
                continue
            assert name in pinned, f"{path.relative_to(ROOT)}: {req.name} is not pinned"
            assert pinned[name] in req.specifier, f"{req} excludes the pin {pinned[name]}"


@pytest.mark.parametrize(("package", "where", "fixed", "vulnerable"), FLOORS)
def test_floors_are_past_the_advisories(
    package: str, where: str, fixed: str, vulnerable: str
) -> None:
    (req,) = [r for r in requirements(ROOT / where / "pyproject.toml") if r.name == package]
    assert fixed in req.specifier
    assert vulnerable not in req.specifier
    # what is pinned and what is installed satisfy it
    assert pins()[package] in req.specifier
    assert Version(metadata.version(package)) in req.specifier


def test_the_venv_matches_the_constraints() -> None:
    """``make setup`` installed exactly the pinned versions (nothing drifted)."""
    for name, version in pins().items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            continue  # a group that is not installed here (e.g. bench)
        assert installed == version, f"{name}: {installed} installed, {version} pinned"


def test_ensure_venv_installs_with_the_constraints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/python").touch()
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("aiohttp==3.14.5\n")
    calls: list[list[str]] = []

    def run(args: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append([str(a) for a in args])
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(devstack, "VENV", venv)
    monkeypatch.setattr(devstack, "CONSTRAINTS", constraints)
    monkeypatch.setattr(devstack.subprocess, "run", run)
    devstack.ensure_venv()
    install = next(c for c in calls if "--group" in c)
    assert install[install.index("-c") + 1] == str(constraints)
    # up to date: nothing runs
    calls.clear()
    devstack.ensure_venv()
    assert calls == []
    # a changed constraints file installs again
    stamp = venv / ".provisioning-installed"
    later = stamp.stat().st_mtime + 10
    os.utime(constraints, (later, later))
    devstack.ensure_venv()
    assert any("-c" in c for c in calls)


def lint_recipe() -> list[str]:
    text = (ROOT / "Makefile").read_text()
    match = re.search(r"^lint:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert match, "no lint target"
    return [line.strip() for line in match.group(1).splitlines()]


def test_make_lint_runs_pip_audit_with_documented_exceptions_only() -> None:
    dev = [r.name for r in requirements(ROOT / "pyproject.toml")]
    assert "pip-audit" in dev
    audit = [line for line in lint_recipe() if "pip-audit" in line]
    assert len(audit) == 1
    assert "-r constraints.txt" in audit[0]
    text = (ROOT / "Makefile").read_text()
    ignored = re.findall(r"--ignore-vuln\s+(\S+)", text)
    assert ignored, "the ecdsa exception is expected while python-jose pulls ecdsa in"
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for vuln in ignored:
        # each exception is named in a comment, with its reason on the following lines
        assert vuln in comments, f"{vuln}: an exception without its reason"
    assert "$(PIP_AUDIT_IGNORE)" in audit[0]
