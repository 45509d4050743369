"""provctl without the real services: argument parsing, the credentials file, exit
codes, and the console script run as a subprocess against the canned server of
test_client_mechanics (the real-service runs are in tests/e2e/test_provctl_e2e.py)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning_client import errors
from provisioning_client.cli.config import Credentials, load_credentials, save_credentials
from provisioning_client.cli.exit_codes import EXIT_CODES_HELP, ExitCode, exit_code_for
from provisioning_client.cli.parser import all_commands, build_parser
from tests.unit.test_client_mechanics import TASKS, threaded_fake

PROVCTL = str(Path(sys.executable).parent / "provctl")

COMMANDS = [
    ["login", "-u", "admin", "--password-stdin", "--mfa-code", "123456"],
    ["logout"],
    ["whoami"],
    ["workflow", "servers", "create", "--infra", "production", "--settings", "config.k"],
    [
        "workflow",
        "taskserv",
        "create",
        "kubernetes",
        "--infra",
        "p",
        "--settings",
        "c.k",
        "--operation",
        "delete",
        "--check",
        "--watch",
    ],
    [
        "workflow",
        "cluster",
        "create",
        "buildkit",
        "--infra",
        "p",
        "--settings",
        "c.k",
        "--no-wait",
        "--idempotency-key",
        "k1",
    ],
    ["batch", "submit", "batch.yaml", "--watch"],
    ["batch", "plan", "b.json"],
    ["batch", "list", "--all"],
    ["batch", "show", "b1"],
    ["batch", "cancel", "b1"],
    ["batch", "resume", "b1", "--operations", "a,b", "--rerun-completed", "--watch"],
    ["batch", "resume", "b1", "--idempotency-key", "k1"],
    ["batch", "approve", "b1", "gate", "--comment", "ok"],
    ["batch", "reject", "b1", "gate"],
    ["watch", "b1", "--timeout", "30"],
    ["tasks", "list", "--status", "Running", "--limit", "5", "--offset", "5"],
    ["tasks", "show", "t1"],
    ["tasks", "logs", "t1", "--follow"],
    ["tasks", "cancel", "t1"],
    ["tasks", "attempts", "t1"],
    ["checkpoint", "create", "before", "--description", "d"],
    ["checkpoint", "list"],
    ["checkpoint", "show", "c1"],
    ["rollback", "execute", "--checkpoint", "c1"],
    ["rollback", "execute", "--operation", "o1", "--operation", "o2"],
    ["rollback", "restore", "c1"],
    ["rollback", "operations"],
    ["rollback", "stats"],
    ["state", "progress", "t1"],
    ["state", "snapshots", "t1"],
    ["state", "metrics"],
    ["state", "health"],
    ["state", "stats"],
    ["users", "list", "--role", "admin", "--disabled"],
    ["users", "show", "u1"],
    [
        "users",
        "create",
        "bob",
        "--email",
        "b@example.com",
        "--roles",
        "operator",
        "--password-stdin",
    ],
    ["users", "update", "u1", "--roles", "viewer,auditor", "--disable"],
    ["users", "delete", "u1"],
    ["users", "reset-mfa", "u1"],
    ["mfa", "enroll", "--password-stdin"],
    ["mfa", "verify", "123456"],
    ["policies", "list"],
    ["policies", "show", "p1"],
    ["policies", "create", "p.yaml"],
    ["policies", "update", "p1", "p.yaml"],
    ["policies", "delete", "p1"],
    [
        "policies",
        "evaluate",
        "--action",
        "create",
        "--resource",
        "servers:web",
        "--user",
        '{"roles": ["viewer"]}',
        "--deny-exit",
    ],
    [
        "audit",
        "logs",
        "--user-id",
        "u1",
        "--action",
        "server.create",
        "--resource",
        "servers/x",
        "--from",
        "2025-01-01T00:00:00Z",
        "--to",
        "2026-01-01T00:00:00Z",
        "--limit",
        "10",
    ],
    ["audit", "verify", "export.ndjson", "--jwks", "jwks.json"],
    ["audit", "verify", "--from-seq", "1", "--to-seq", "10"],
    ["audit", "export", "out.ndjson", "--from-seq", "1"],
    ["webhooks", "deliveries"],
    ["webhooks", "redeliver", "d1"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_command_parses_to_a_handler(argv: list[str]) -> None:
    args = build_parser().parse_args([*argv, "--output", "json"])
    assert args.cmd in all_commands()
    assert args.output == "json"
    # The handler's typed arguments are all on the command line the parser built.
    assert isinstance(args.cmd.bind(args), args.cmd.args_type)


def test_global_options_before_the_command() -> None:
    args = build_parser().parse_args(
        ["-o", "json", "--orchestrator-url", "http://o:1", "tasks", "list"]
    )
    assert (args.output, args.orchestrator_url) == ("json", "http://o:1")


@pytest.mark.parametrize(
    "argv",
    [
        ["rollback", "execute"],  # needs --checkpoint or --operation
        ["rollback", "execute", "--checkpoint", "c", "--operation", "o"],
        ["tasks"],
        ["workflow", "servers", "create", "--infra", "p"],
        ["bogus"],
        ["tasks", "list", "--limit", "many"],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2


def test_exit_codes_by_error_type() -> None:
    def make(status: int) -> errors.ApiError:
        return errors.error_for_status(status, "x")

    assert [exit_code_for(make(s)) for s in (401, 403, 404, 409, 400, 422, 413, 429, 500, 503)] == [
        3,
        4,
        5,
        6,
        7,
        7,
        7,
        8,
        9,
        9,
    ]
    assert exit_code_for(errors.TransportError("down")) == 9
    assert exit_code_for(make(418)) is ExitCode.ERROR


def test_exit_codes_help_lists_every_code() -> None:
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 130]
    lines = EXIT_CODES_HELP.splitlines()
    assert lines[0] == "exit codes:"
    assert lines[1:] == [f"  {c.value:<3} {c.meaning}" for c in ExitCode]
    assert lines[-1] == "  130 interrupted"


def test_credentials_file_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVCTL_CONFIG_DIR", str(tmp_path / "cfg"))
    path = save_credentials(Credentials(token="secret-token", username="admin"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_credentials().token == "secret-token"
    path.write_text("not json")
    assert load_credentials() == Credentials()


def _provctl(
    argv: list[str], env: dict[str, str], stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROVCTL, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_provctl_subprocess_against_canned_server(tmp_path: Path) -> None:
    with threaded_fake() as fake:
        env = {
            **os.environ,
            "PROVCTL_CONFIG_DIR": str(tmp_path / "cfg"),
            "PROVISIONING_ORCHESTRATOR_URL": fake.url,
            "PROVISIONING_CONTROL_CENTER_URL": fake.url,
        }
        env.pop("PROVCTL_TOKEN", None)
        not_logged_in = _provctl(["tasks", "list", "-o", "json"], env)
        assert not_logged_in.returncode == 3
        assert json.loads(not_logged_in.stderr)["status"] == 401

        # Password, then the MFA code the server asks for, both from stdin.
        login = _provctl(
            ["login", "-u", "mfa-user", "--password-stdin", "-o", "json"], env, stdin="pw\n123456\n"
        )
        assert login.returncode == 0, login.stderr
        assert json.loads(login.stdout)["username"] == "mfa-user"
        creds = tmp_path / "cfg" / "credentials.json"
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
        assert json.loads(creds.read_text())["token"] == "access-1"

        listed = _provctl(["tasks", "list", "--all", "-o", "json"], env)
        assert listed.returncode == 0, listed.stderr
        assert [t["id"] for t in json.loads(listed.stdout)] == [t["id"] for t in TASKS]

        missing = _provctl(["tasks", "show", "status-404", "-o", "json"], env)
        assert missing.returncode == 5
        assert json.loads(missing.stderr) == {
            "success": False,
            "error": "canned 404",
            "status": 404,
        }
        table = _provctl(["tasks", "show", "t9"], env)
        assert table.returncode == 0
        assert "create_servers" in table.stdout

        bad_file = _provctl(["batch", "submit", str(tmp_path / "nope.json")], env)
        assert bad_file.returncode == 7
        assert "cannot read" in bad_file.stderr


def test_the_command_table_covers_every_handler() -> None:
    parser = build_parser()
    covered = {parser.parse_args(argv).cmd.handler for argv in COMMANDS}
    registered = [command.handler for command in all_commands()]
    assert len(registered) == len(set(registered))  # one command per handler
    assert covered == set(registered)
