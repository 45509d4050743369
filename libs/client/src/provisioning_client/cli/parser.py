"""provctl's argument parser (argparse: no extra dependency, predictable help)."""

from __future__ import annotations

import argparse

EXIT_CODES_HELP = """exit codes:
  0   success
  1   other API error
  2   usage error
  3   not logged in / authentication failed (401)
  4   permission denied (403)
  5   not found (404)
  6   conflict (409)
  7   invalid input (400, 413, 422, bad file)
  8   rate limited (429)
  9   service unreachable or server error (5xx)
  10  watched workflow finished Failed or Cancelled
  11  watch timed out
  130 interrupted
"""


def _common() -> argparse.ArgumentParser:
    """Options accepted both before and after the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        default=argparse.SUPPRESS,
        help="output format (json for scripting)",
    )
    common.add_argument(
        "--orchestrator-url",
        default=argparse.SUPPRESS,
        help="default $PROVISIONING_ORCHESTRATOR_URL or the login's URL",
    )
    common.add_argument(
        "--control-center-url",
        default=argparse.SUPPRESS,
        help="default $PROVISIONING_CONTROL_CENTER_URL or the login's URL",
    )
    return common


class _Builder:
    def __init__(self) -> None:
        self.common = _common()

    def group(
        self, subs: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str
    ) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        parser = subs.add_parser(name, help=help_)
        inner = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)
        return inner

    def leaf(
        self,
        subs: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        help_: str,
        handler: str,
    ) -> argparse.ArgumentParser:
        parser = subs.add_parser(name, help=help_, parents=[self.common])
        parser.set_defaults(handler=handler)
        return parser


def _paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, help="page size (server default 50, max 1000)")
    parser.add_argument("--offset", type=int)
    parser.add_argument("--all", action="store_true", help="follow pagination to the end")


def _submission(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--infra", required=True)
    parser.add_argument("--settings", required=True, help="settings file, e.g. config.k")
    parser.add_argument("--check", action="store_true", help="check mode (dry run)")
    parser.add_argument("--no-wait", action="store_true", help="submit with wait=false")
    parser.add_argument("--idempotency-key", help="default: a new UUID per invocation")
    parser.add_argument("--watch", action="store_true", help="follow the task's progress")


def build_parser() -> argparse.ArgumentParser:
    b = _Builder()
    root = argparse.ArgumentParser(
        prog="provctl",
        parents=[b.common],
        description="Command line client of the provisioning control plane.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subs = root.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = b.leaf(subs, "login", "log in (MFA code prompted when needed); stores the token", "login")
    p.add_argument("-u", "--username")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin",
    )
    p.add_argument("--mfa-code", help="TOTP code (prompted when required and not given)")
    b.leaf(subs, "logout", "revoke the stored token and forget it", "logout")
    b.leaf(subs, "whoami", "show the logged-in user", "whoami")

    wf = b.group(subs, "workflow", "submit workflows")
    kind = b.group(wf, "servers", "server workflows")
    _submission(b.leaf(kind, "create", "create servers", "workflow_servers"))
    kind = b.group(wf, "taskserv", "task service workflows")
    p = b.leaf(kind, "create", "run a task service operation", "workflow_taskserv")
    p.add_argument("taskserv")
    p.add_argument("--operation", default="create")
    _submission(p)
    kind = b.group(wf, "cluster", "cluster workflows")
    p = b.leaf(kind, "create", "run a cluster operation", "workflow_cluster")
    p.add_argument("cluster_type")
    p.add_argument("--operation", default="create")
    _submission(p)

    bt = b.group(subs, "batch", "batch workflows")
    p = b.leaf(bt, "submit", "execute a batch (contract JSON or YAML; - for stdin)", "batch_submit")
    p.add_argument("file")
    p.add_argument("--idempotency-key")
    p.add_argument("--watch", action="store_true")
    p = b.leaf(bt, "plan", "validate a batch and show its execution plan", "batch_plan")
    p.add_argument("file")
    _paging(b.leaf(bt, "list", "list batches", "batch_list"))
    b.leaf(bt, "show", "show a batch", "batch_show").add_argument("id")
    b.leaf(bt, "cancel", "cancel a batch", "batch_cancel").add_argument("id")

    p = b.leaf(subs, "watch", "live progress of a task or batch until it finishes", "watch")
    p.add_argument("id", metavar="TASK_OR_BATCH_ID")
    p.add_argument("--timeout", type=float, help="give up after this many seconds")

    tk = b.group(subs, "tasks", "workflow tasks")
    p = b.leaf(tk, "list", "list tasks", "tasks_list")
    p.add_argument("--status", help="Pending, Running, Completed, Failed or Cancelled")
    _paging(p)
    b.leaf(tk, "show", "show a task", "tasks_show").add_argument("id")
    p = b.leaf(tk, "logs", "print a task's output", "tasks_logs")
    p.add_argument("id")
    p.add_argument("-f", "--follow", action="store_true", help="stream output until it ends")
    b.leaf(tk, "cancel", "cancel a task", "tasks_cancel").add_argument("id")
    b.leaf(tk, "attempts", "a task's attempt history", "tasks_attempts").add_argument("id")

    cp = b.group(subs, "checkpoint", "rollback checkpoints")
    p = b.leaf(cp, "create", "create a checkpoint", "checkpoint_create")
    p.add_argument("name")
    p.add_argument("--description", default="")
    _paging(b.leaf(cp, "list", "list checkpoints", "checkpoint_list"))
    b.leaf(cp, "show", "show a checkpoint", "checkpoint_show").add_argument("id")

    rb = b.group(subs, "rollback", "rollback and restore")
    p = b.leaf(
        rb, "execute", "roll back to a checkpoint or specific operations", "rollback_execute"
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--checkpoint", dest="checkpoint_id")
    target.add_argument(
        "--operation",
        dest="operation_ids",
        action="append",
        help="ledger operation id (repeatable)",
    )
    b.leaf(rb, "restore", "restore state from a checkpoint", "rollback_restore").add_argument("id")
    _paging(b.leaf(rb, "operations", "list the operations ledger", "rollback_operations"))
    b.leaf(rb, "stats", "rollback statistics", "rollback_stats")

    st = b.group(subs, "state", "workflow state and system status")
    b.leaf(st, "progress", "progress of a task or batch", "state_progress").add_argument("id")
    b.leaf(st, "snapshots", "state snapshots of a workflow", "state_snapshots").add_argument("id")
    b.leaf(st, "metrics", "system metrics", "state_metrics")
    b.leaf(st, "health", "system health", "state_health")
    b.leaf(st, "stats", "state statistics", "state_stats")

    us = b.group(subs, "users", "user management (admin)")
    p = b.leaf(us, "list", "list users", "users_list")
    p.add_argument("--role")
    enabled = p.add_mutually_exclusive_group()
    enabled.add_argument("--enabled", dest="enabled", action="store_true", default=None)
    enabled.add_argument("--disabled", dest="enabled", action="store_false")
    _paging(p)
    b.leaf(us, "show", "show a user", "users_show").add_argument("id")
    p = b.leaf(us, "create", "create a user (password from stdin)", "users_create")
    p.add_argument("username")
    p.add_argument("--email", required=True)
    p.add_argument("--roles", required=True, help="comma separated, e.g. operator,viewer")
    p.add_argument("--disabled", action="store_true")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (else prompted)"
    )
    p = b.leaf(us, "update", "update a user", "users_update")
    p.add_argument("id")
    p.add_argument("--email")
    p.add_argument("--roles")
    state = p.add_mutually_exclusive_group()
    state.add_argument("--enable", dest="enabled", action="store_true", default=None)
    state.add_argument("--disable", dest="enabled", action="store_false")
    b.leaf(us, "delete", "delete a user", "users_delete").add_argument("id")
    b.leaf(us, "reset-mfa", "remove a user's MFA enrolment", "users_reset_mfa").add_argument("id")

    mfa = b.group(subs, "mfa", "your own MFA enrolment")
    p = b.leaf(mfa, "enroll", "start TOTP enrolment (re-checks your password)", "mfa_enroll")
    p.add_argument("--password-stdin", action="store_true")
    b.leaf(mfa, "verify", "activate MFA with a code", "mfa_verify").add_argument("code")

    po = b.group(subs, "policies", "authorization policies")
    _paging(b.leaf(po, "list", "list policies", "policies_list"))
    b.leaf(po, "show", "show a policy", "policies_show").add_argument("id")
    p = b.leaf(po, "create", "create a policy from a JSON/YAML file", "policies_create")
    p.add_argument("file")
    p = b.leaf(po, "update", "update a policy from a JSON/YAML file", "policies_update")
    p.add_argument("id")
    p.add_argument("file")
    b.leaf(po, "delete", "delete a policy", "policies_delete").add_argument("id")
    p = b.leaf(po, "evaluate", "explain the decision for an action", "policies_evaluate")
    p.add_argument("--action", required=True)
    p.add_argument("--resource", required=True)
    p.add_argument("--user", help='JSON object, e.g. \'{"roles": ["viewer"]}\'')
    p.add_argument("--context", help="JSON object")
    p.add_argument("--deny-exit", action="store_true", help="exit 4 when the decision is deny")

    au = b.group(subs, "audit", "audit log")
    p = b.leaf(au, "logs", "query the audit log", "audit_logs")
    p.add_argument("--user-id")
    p.add_argument("--action")
    p.add_argument("--resource")
    p.add_argument("--from", dest="since", help="ISO 8601 start")
    p.add_argument("--to", dest="until", help="ISO 8601 end")
    _paging(p)

    wh = b.group(subs, "webhooks", "webhook deliveries")
    _paging(b.leaf(wh, "deliveries", "list webhook deliveries", "webhooks_deliveries"))
    b.leaf(wh, "redeliver", "redeliver a webhook", "webhooks_redeliver").add_argument("id")
    return root
