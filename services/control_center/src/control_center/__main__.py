"""``python -m control_center``"""

from __future__ import annotations

from provisioning_common.runner import run_service

from .app import create_app
from .settings import Settings


def main() -> None:
    run_service("control_center", Settings.from_env, lambda s: s.common, create_app)


if __name__ == "__main__":
    main()
