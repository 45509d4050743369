"""``provctl``: the command line client (console script ``provisioning_client.cli:main``)."""

from .app import main

__all__ = ["main"]
