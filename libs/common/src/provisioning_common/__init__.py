"""Shared library of the provisioning control plane.

Everything both services need exists here once: the response envelope and error
mapping, pagination, API versioning, configuration, storage helpers, the
unique-insert claim, the rate limiter, the event bus, metrics and logging.
"""

__version__ = "0.1.0"
