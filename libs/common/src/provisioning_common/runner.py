"""Process entry point both services share: JSON logs, settings validated before
anything starts (a bad value exits 2 with its message), graceful shutdown on
SIGTERM/SIGINT within ``SHUTDOWN_GRACE_SECONDS``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from aiohttp import web

from .config import CommonSettings, ConfigError
from .logging import configure_logging
from .prefix import mount

S = TypeVar("S")


def run_service(
    service: str,
    load_settings: Callable[[], S],
    common_of: Callable[[S], CommonSettings],
    create_app: Callable[[S], web.Application],
) -> None:
    configure_logging(service)  # the settings' LOG_LEVEL once they are read
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"{service}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    common = common_of(settings)
    configure_logging(service, common.log_level)
    logging.getLogger(service).info(
        "starting", extra={"host": common.host, "port": common.port, "database": common.database}
    )
    web.run_app(
        mount(create_app(settings), common),
        host=common.host,
        port=common.port,
        shutdown_timeout=common.shutdown_grace_seconds,
        access_log=None,
        print=None,
        handle_signals=True,
    )
