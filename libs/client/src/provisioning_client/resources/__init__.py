"""The client's resource namespaces, one module per group of endpoints:
``client.auth``, ``client.users``, ``client.policies``, ``client.audit`` (control
center); ``client.tasks``, ``client.workflows``, ``client.batches``, ``client.state``,
``client.rollback``, ``client.webhooks`` (orchestrator); ``client.system`` (both)."""

from .audit import AuditAPI
from .auth import AuthAPI
from .batches import BatchesAPI
from .policies import PoliciesAPI
from .rollback import RollbackAPI
from .state import StateAPI
from .system import SystemAPI
from .tasks import TasksAPI
from .users import UsersAPI
from .webhooks import WebhooksAPI
from .workflows import WorkflowsAPI

__all__ = [
    "AuditAPI",
    "AuthAPI",
    "BatchesAPI",
    "PoliciesAPI",
    "RollbackAPI",
    "StateAPI",
    "SystemAPI",
    "TasksAPI",
    "UsersAPI",
    "WebhooksAPI",
    "WorkflowsAPI",
]
