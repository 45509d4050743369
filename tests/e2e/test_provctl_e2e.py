"""provctl as a subprocess against the live services: JSON output checked, exit
codes, the stored token, and once through a pseudo-terminal to see the live progress
display reach 100%."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pyotp
import pytest
import yaml

from tests.e2e.contract_examples import harness
from tests.support.contract import CONTRACT_BATCH

pytestmark = pytest.mark.e2e

PROVCTL = str(Path(sys.executable).parent / "provctl")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


@pytest.fixture(scope="module")
def live(services: Any) -> harness.LiveServices:
    return harness.from_services(services)


@pytest.fixture(scope="module")
def env(live: harness.LiveServices, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A logged-in provctl environment (own config dir) shared by the module's tests."""
    values = {k: v for k, v in os.environ.items() if k != "PROVCTL_TOKEN"}
    values.update(
        {
            "PROVCTL_CONFIG_DIR": str(tmp_path_factory.mktemp("provctl") / "config"),
            "PROVISIONING_ORCHESTRATOR_URL": live.orchestrator_url,
            "PROVISIONING_CONTROL_CENTER_URL": live.control_center_url,
            "NO_COLOR": "1",
        }
    )
    login = provctl(
        values,
        "login",
        "-u",
        live.admin_username,
        "--password-stdin",
        stdin=live.admin_password + "\n",
    )
    assert login.returncode == 0, login.stderr
    return values


def provctl(
    env: dict[str, str], *argv: str, stdin: str = "", timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROVCTL, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def as_json(env: dict[str, str], *argv: str, stdin: str = "", code: int = 0) -> Any:
    proc = provctl(env, *argv, "--output", "json", stdin=stdin)
    assert proc.returncode == code, (argv, proc.stdout, proc.stderr)
    # Results go to stdout; errors (``{"success": false, ...}``) to stderr.
    return json.loads(proc.stdout if proc.stdout.strip() else proc.stderr)


def test_login_stores_a_private_token(env: dict[str, str], live: harness.LiveServices) -> None:
    creds = Path(env["PROVCTL_CONFIG_DIR"]) / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert json.loads(creds.read_text())["token"]
    me = as_json(env, "whoami")
    assert me["username"] == live.admin_username
    assert "password" not in json.dumps(me).lower()


def test_workflows_and_tasks(env: dict[str, str]) -> None:
    task_id = as_json(
        env, "workflow", "servers", "create", "--infra", "production", "--settings", "config.k"
    )["task_id"]
    final = as_json(env, "watch", task_id, "--timeout", "60")
    assert (final["id"], final["status"]) == (task_id, "Completed")
    shown = as_json(env, "tasks", "show", task_id)
    assert shown["command"].endswith("servers create")
    listed = as_json(env, "tasks", "list", "--status", "Completed", "--all")
    assert task_id in [t["id"] for t in listed]
    assert as_json(env, "tasks", "logs", task_id)["output"]
    assert len(as_json(env, "tasks", "attempts", task_id)) >= 1

    taskserv = as_json(
        env,
        "workflow",
        "taskserv",
        "create",
        "kubernetes",
        "--infra",
        "prod",
        "--settings",
        "config.k",
        "--watch",
    )
    assert taskserv["status"] == "Completed"
    cluster = as_json(
        env,
        "workflow",
        "cluster",
        "create",
        "buildkit",
        "--infra",
        "prod",
        "--settings",
        "config.k",
        "--watch",
    )
    assert cluster["command"].endswith("cluster create")

    failed = as_json(
        env,
        "workflow",
        "servers",
        "create",
        "--infra",
        "web-fail",
        "--settings",
        "config.k",
        "--watch",
        code=10,
    )
    assert failed["status"] == "Failed"
    assert failed["error"]
    slow = as_json(
        env, "workflow", "servers", "create", "--infra", "prod-sleep30", "--settings", "config.k"
    )["task_id"]
    as_json(env, "tasks", "cancel", slow)
    assert as_json(env, "watch", slow, code=10)["status"] == "Cancelled"

    followed = as_json(
        env, "workflow", "servers", "create", "--infra", "prod-sleep2", "--settings", "config.k"
    )["task_id"]
    logs = provctl(env, "tasks", "logs", followed, "--follow")
    assert logs.returncode == 0, logs.stderr
    assert [ln for ln in logs.stdout.splitlines() if ln.startswith("step ")] == [
        f"step {i} of 4 for prod-sleep2" for i in range(1, 5)
    ]

    missing = as_json(env, "tasks", "show", str(uuid.uuid4()), code=5)
    assert missing["success"] is False
    assert missing["status"] == 404
    invalid = as_json(
        env,
        "workflow",
        "servers",
        "create",
        "--infra",
        "bad infra!",
        "--settings",
        "config.k",
        code=7,
    )
    assert invalid["status"] == 422


def test_users_policies_and_audit(env: dict[str, str]) -> None:
    name = f"cli{uuid.uuid4().hex[:8]}"
    user = as_json(
        env,
        "users",
        "create",
        name,
        "--email",
        f"{name}@example.com",
        "--roles",
        "viewer",
        "--password-stdin",
        stdin="Viewer-passw0rd!\n",
    )
    assert user["roles"] == ["viewer"]
    assert name in [u["username"] for u in as_json(env, "users", "list", "--role", "viewer")]
    as_json(env, "users", "update", user["id"], "--roles", "operator", "--disable")
    shown = as_json(env, "users", "show", user["id"])
    assert (shown["roles"], shown["enabled"]) == (["operator"], False)
    as_json(env, "users", "delete", user["id"])
    as_json(env, "users", "show", user["id"], code=5)

    assert as_json(env, "policies", "list")
    decision = as_json(
        env, "policies", "evaluate", "--action", "create", "--resource", "servers:web"
    )
    assert decision["allowed"] is True
    denied = provctl(
        env,
        "policies",
        "evaluate",
        "--action",
        "create",
        "--resource",
        "servers:web",
        "--user",
        '{"roles": ["viewer"]}',
        "--deny-exit",
        "-o",
        "json",
    )
    assert denied.returncode == 4
    assert json.loads(denied.stdout)["allowed"] is False

    logs = as_json(
        env,
        "audit",
        "logs",
        "--action",
        "auth.login",
        "--limit",
        "2",
        "--from",
        "2020-01-01T00:00:00Z",
    )
    assert 1 <= len(logs) <= 2
    assert all(entry["action"] == "auth.login" for entry in logs)


def test_batches_checkpoints_and_rollback(env: dict[str, str], tmp_path: Path) -> None:
    batch_file = tmp_path / "batch.yaml"
    batch_file.write_text(yaml.safe_dump(CONTRACT_BATCH))
    assert as_json(env, "batch", "plan", str(batch_file))["waves"] == [
        ["upcloud_servers"],
        ["aws_taskservs"],
    ]
    table = provctl(env, "batch", "plan", str(batch_file))
    assert "5 tasks in 2 waves" in table.stdout
    checkpoint = as_json(
        env, "checkpoint", "create", "before_major_update", "--description", "cli e2e"
    )["id"]
    assert checkpoint in [c["id"] for c in as_json(env, "checkpoint", "list")]
    batch = as_json(env, "batch", "submit", str(batch_file))
    final = as_json(env, "watch", batch["batch_id"], "--timeout", "60")
    assert final["status"] == "Completed"
    assert [op["progress"] for op in final["operations"]] == [100.0, 100.0]
    assert batch["batch_id"] in [b["batch_id"] for b in as_json(env, "batch", "list")]
    assert as_json(env, "batch", "show", batch["batch_id"])["status"] == "Completed"
    as_json(env, "batch", "cancel", batch["batch_id"], code=6)
    result = as_json(env, "rollback", "execute", "--checkpoint", checkpoint)
    assert result["rollback_id"]
    assert checkpoint in as_json(env, "rollback", "restore", checkpoint)
    assert as_json(env, "state", "metrics")["total_workflows"] >= 1
    assert as_json(env, "state", "health")["overall_status"]


def _run_in_pty(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [PROVCTL, *argv],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env, "TERM": "xterm-256color", "COLUMNS": "120"},
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, ANSI.sub("", b"".join(chunks).decode(errors="replace"))


def test_watch_progress_display_reaches_100_in_a_terminal(
    env: dict[str, str], tmp_path: Path
) -> None:
    batch_file = tmp_path / "batch.json"
    batch_file.write_text(json.dumps(CONTRACT_BATCH))
    env_tty = {k: v for k, v in env.items() if k != "NO_COLOR"}
    code, screen = _run_in_pty(["batch", "submit", str(batch_file), "--watch"], env_tty, 120)
    assert code == 0, screen
    for operation in ("upcloud_servers", "aws_taskservs"):
        assert re.search(rf"{operation}\s.*100%", screen), screen
    assert "Completed" in screen


def test_login_asks_for_the_mfa_code(env: dict[str, str]) -> None:
    name, password = f"mfa{uuid.uuid4().hex[:8]}", "Operator-passw0rd!"
    as_json(
        env,
        "users",
        "create",
        name,
        "--email",
        f"{name}@example.com",
        "--roles",
        "operator",
        "--password-stdin",
        stdin=password + "\n",
    )
    own = {**env, "PROVCTL_CONFIG_DIR": env["PROVCTL_CONFIG_DIR"] + f"-{name}"}
    as_json(own, "login", "-u", name, "--password-stdin", stdin=password + "\n")
    enrollment = as_json(own, "mfa", "enroll", "--password-stdin", stdin=password + "\n")
    assert enrollment["otpauth_uri"].startswith("otpauth://")
    totp = pyotp.TOTP(enrollment["secret"])
    as_json(own, "mfa", "verify", totp.now())
    # Without a code at hand: the server asks for one and provctl reads it next.
    refused = as_json(
        own, "login", "-u", name, "--password-stdin", stdin=password + "\n", code=7
    )  # no code on stdin: input error
    assert "MFA code" in refused["error"]
    fresh = totp.at(time.time() + 30)  # the verify code is spent; the next step is allowed
    logged_in = as_json(
        own, "login", "-u", name, "--password-stdin", stdin=f"{password}\n{fresh}\n"
    )
    assert logged_in["username"] == name
    assert as_json(own, "whoami")["mfa_enabled"] is True


def test_logout_forgets_the_token(env: dict[str, str], live: harness.LiveServices) -> None:
    separate = {**env, "PROVCTL_CONFIG_DIR": env["PROVCTL_CONFIG_DIR"] + "-logout"}
    assert (
        provctl(
            separate,
            "login",
            "-u",
            live.admin_username,
            "--password-stdin",
            stdin=live.admin_password + "\n",
        ).returncode
        == 0
    )
    assert provctl(separate, "logout").returncode == 0
    assert not (Path(separate["PROVCTL_CONFIG_DIR"]) / "credentials.json").exists()
    after = provctl(separate, "tasks", "list", "-o", "json")
    assert after.returncode == 3
