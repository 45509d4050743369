"""Reading the JSON/YAML documents provctl submits (batches, policies)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


class InputFileError(ValueError):
    """The file is missing or is not a JSON/YAML object."""


def load_document(name: str) -> dict[str, Any]:
    """JSON first (the contract's format), then YAML; ``-`` reads stdin."""
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
    except OSError as exc:
        raise InputFileError(f"cannot read {name}: {exc.strerror}") from exc
    try:
        data: Any = json.loads(text)
    except ValueError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputFileError(f"{name} is neither valid JSON nor YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InputFileError(f"{name} must contain a JSON/YAML object")
    return data


def parse_json_option(value: str | None, option: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        data: Any = json.loads(value)
    except ValueError as exc:
        raise InputFileError(f"{option} must be a JSON object: {exc}") from exc
    if not isinstance(data, dict):
        raise InputFileError(f"{option} must be a JSON object")
    return data
