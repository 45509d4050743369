"""Where provctl keeps its credentials: ``$PROVCTL_CONFIG_DIR``, else
``$XDG_CONFIG_HOME/provctl``, else ``~/.config/provctl``; the file is written
atomically with mode 0600 in a 0700 directory because it holds bearer tokens."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

CREDENTIALS_FILE = "credentials.json"


def config_dir() -> Path:
    explicit = os.environ.get("PROVCTL_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else Path.home() / ".config"
    return base / "provctl"


@dataclass(slots=True)
class Credentials:
    orchestrator_url: str | None = None
    control_center_url: str | None = None
    username: str | None = None
    token: str | None = None
    expires_at: str | None = None
    refresh_token: str | None = None
    refresh_expires_at: str | None = None


def credentials_path() -> Path:
    return config_dir() / CREDENTIALS_FILE


def load_credentials() -> Credentials:
    path = credentials_path()
    try:
        raw: Any = json.loads(path.read_text())
    except (OSError, ValueError):
        return Credentials()
    if not isinstance(raw, dict):
        return Credentials()
    names = {f.name for f in fields(Credentials)}
    return Credentials(**{k: v for k, v in raw.items() if k in names and isinstance(v, str)})


def save_credentials(creds: Credentials) -> Path:
    directory = config_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    path = directory / CREDENTIALS_FILE
    tmp = directory / f".{CREDENTIALS_FILE}.{os.getpid()}.tmp"
    # Created 0600 from the start: the token is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(creds), fh, indent=2)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def delete_credentials() -> None:
    credentials_path().unlink(missing_ok=True)
