"""The operator console in a real browser (Debian's Chromium through Playwright): the
journeys of issue #15, each page screenshotted and scanned with axe-core. Synchronised
on page state (Playwright's auto-waiting ``expect``), never on sleeps."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
import requests
from playwright.sync_api import expect

from tests.e2e.conftest import E2E_ORCH_ENV, Services
from tests.support.contract import CONTRACT_BATCH
from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    TEST_ENV,
    create_user,
    login,
    orchestrator_env,
)
from tests.support.orchestrator import SIMULATOR
from tests.support.processes import ServiceProcess, service_env
from tests.support.stack import devstack

from .conftest import Console

T = 10
LIVE = 30_000  # ms: how long a live update may take to show


def _submit(services: Services, infra: str) -> str:
    resp = requests.post(
        f"{services.orch_url}/workflows/servers/create",
        json={"infra": infra, "settings": "config.k", "check_mode": False, "wait": True},
        headers=services.headers(),
        timeout=T,
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["data"])


# ------------------------------------------------------------------- serving


def test_console_is_served_with_a_strict_csp(console_services: Services) -> None:
    base = console_services.orch_url
    moved = requests.get(f"{base}/ui", allow_redirects=False, timeout=T)
    assert moved.status_code == 302
    assert moved.headers["Location"] == "ui/"
    index = requests.get(f"{base}/ui/", timeout=T)
    assert index.status_code == 200
    assert index.headers["Content-Type"].startswith("text/html")
    csp = index.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert console_services.cc_url in csp  # connect-src: the control center
    assert "<script>" not in index.text  # the only script is a file
    script = re.search(r'src="\./(assets/[^"]+\.js)"', index.text)
    assert script, index.text
    asset = requests.get(f"{base}/ui/{script.group(1)}", timeout=T)
    assert asset.status_code == 200
    assert asset.headers["Content-Type"].startswith("text/javascript")
    assert "immutable" in asset.headers["Cache-Control"]
    config = requests.get(f"{base}/ui/config.json", timeout=T).json()
    assert config["control_center_url"] == console_services.cc_url
    assert requests.get(f"{base}/ui/nope.js", timeout=T).status_code == 404
    assert requests.get(f"{base}/ui/..%2f..%2fpyproject.toml", timeout=T).status_code == 404
    assert requests.post(f"{base}/ui/", timeout=T).status_code == 405
    spec = requests.get(f"{base}/openapi.json", timeout=T).json()
    assert not [p for p in spec["paths"] if p.startswith("/ui")]
    # CORS for the console's origin on the control center
    preflight = requests.options(
        f"{console_services.cc_url}/auth/login",
        headers={"Origin": base, "Access-Control-Request-Method": "POST"},
        timeout=T,
    )
    assert preflight.headers.get("Access-Control-Allow-Origin") == base


# ------------------------------------------------------------------ journeys


def test_sign_in_with_mfa_enrolment(console: Console) -> None:
    services = console.services
    name, password = f"op-{uuid.uuid4().hex[:8]}", "Operator-Passw0rd-1"
    create_user(services.cc_url, services.admin_token, name, ["operator"], password)
    page = console.page
    page.goto(console.url)
    expect(page.get_by_role("form", name="Sign in")).to_be_visible()
    console.check("sign-in")

    console.sign_in(name, password)
    expect(page.get_by_role("heading", name="Set up two-factor authentication")).to_be_visible()
    page.get_by_role("button", name="Show QR code").click()
    expect(page.get_by_role("img", name="QR code of the authenticator secret")).to_be_visible()
    secret = page.get_by_test_id("mfa-secret").inner_text()
    console.check("mfa-enrolment")
    totp = pyotp.TOTP(secret)
    now = time.time()
    page.get_by_label("Code from the app").fill(totp.at(now))
    page.get_by_role("button", name="Turn on two-factor authentication").click()
    expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    console.sign_in(name, password)  # no code: the API's message is shown
    expect(page.get_by_role("alert")).to_contain_text("MFA")
    console.check("sign-in-mfa-required")
    page.get_by_label("Authentication code").fill(totp.at(now + 30))  # the next step
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()
    expect(page.get_by_text(f"{name} (operator)")).to_be_visible()


def test_submit_a_server_workflow_and_watch_it_complete(console: Console) -> None:
    page = console.page
    console.sign_in_admin()
    console.goto("/submit")
    form = page.get_by_role("form", name="Workflow")
    expect(form).to_be_visible()
    form.get_by_label("Infrastructure").fill("web-sleep3")
    console.check("submit")
    form.get_by_role("button", name="Submit").click()

    status = page.get_by_test_id("task-status")
    expect(status).to_have_text("Running", timeout=LIVE)  # pushed by /ws
    expect(page.get_by_text("Live", exact=True)).to_be_visible()
    expect(status).to_have_text("Completed", timeout=LIVE)
    expect(page.get_by_test_id("task-output")).not_to_have_text("No output yet.")
    console.check("task")

    task_id = page.url.split("#/tasks/")[1]
    console.goto("/tasks")
    row = page.locator(f'tr[data-task-id="{task_id}"]')
    expect(row).to_contain_text("web-sleep3")
    expect(row).to_contain_text("Completed")
    console.check("tasks")


def test_task_list_updates_live_and_filters(console: Console) -> None:
    page = console.page
    console.sign_in_admin()
    page.get_by_label("Status").select_option("Running")
    table = page.get_by_test_id("tasks-table")
    expect(table).to_have_attribute("data-status", "Running")
    expect(table).to_have_attribute("aria-busy", "false")  # loaded: what follows is live
    task_id = _submit(console.services, "live-sleep2")  # created outside the page
    row = page.locator(f'tr[data-task-id="{task_id}"]')
    expect(row).to_contain_text("Running", timeout=LIVE)
    expect(row).to_have_count(0, timeout=LIVE)  # Completed: leaves the Running filter
    page.get_by_label("Status").select_option("Completed")
    expect(row).to_contain_text("Completed")


def test_contract_batch_plan_and_dag(console: Console) -> None:
    page = console.page
    console.sign_in_admin()
    console.goto("/batches")
    form = page.get_by_role("form", name="New batch")
    form.get_by_role("button", name="Use the contract example").click()
    assert (
        '"multi_cloud_deployment"' in form.get_by_label(re.compile("Batch document")).input_value()
    )
    form.get_by_role("button", name="Validate and plan").click()
    plan = page.get_by_test_id("batch-plan")
    expect(plan).to_contain_text("5 tasks in 2 waves")
    console.check("batch-plan")
    plan.get_by_role("button", name="Execute batch").click()

    expect(page.get_by_role("img", name=re.compile("Dependency graph"))).to_be_visible()
    ops = page.get_by_test_id("batch-operations")
    expect(ops.locator('tr[data-operation-id="upcloud_servers"]')).to_contain_text(
        "Completed", timeout=LIVE
    )
    expect(ops.locator('tr[data-operation-id="aws_taskservs"]')).to_contain_text(
        "Completed", timeout=LIVE
    )
    expect(page.get_by_test_id("batch-status")).to_have_text("Completed", timeout=LIVE)
    console.check("batch-dag", readme="console-batch-dag.png")
    console.goto("/tasks")
    expect(page.locator("tr[data-task-id]").filter(has_text="aws_taskservs").first).to_be_visible()
    console.check("tasks-after-batch", readme="console-tasks.png")


def test_invalid_batch_shows_the_api_errors(console: Console) -> None:
    page = console.page
    console.sign_in_admin()
    console.goto("/batches")
    bad = {**CONTRACT_BATCH, "operations": [{**CONTRACT_BATCH["operations"][1]}]}
    form = page.get_by_role("form", name="New batch")
    form.get_by_label(re.compile("Batch document")).fill(json.dumps(bad))
    form.get_by_role("button", name="Validate and plan").click()
    expect(form.get_by_role("alert")).to_contain_text("upcloud_servers")


def test_cancel_a_running_task(console: Console) -> None:
    page = console.page
    console.sign_in_admin()
    task_id = _submit(console.services, "cancel-sleep60")
    console.goto(f"/tasks/{task_id}")
    status = page.get_by_test_id("task-status")
    expect(status).to_have_text("Running", timeout=LIVE)
    page.get_by_test_id("cancel-task").click()
    dialog = page.get_by_role("dialog", name="Cancel this task?")
    expect(dialog).to_be_visible()
    console.check("task-cancel-confirmation")
    dialog.get_by_role("button", name="Cancel task").click()
    expect(status).to_have_text("Cancelled", timeout=LIVE)
    expect(page.get_by_test_id("cancel-task")).to_be_disabled()


def test_roll_back_from_a_checkpoint(console: Console) -> None:
    page = console.page
    services = console.services
    console.sign_in_admin()
    console.goto("/state")
    expect(page.get_by_role("heading", name="System health")).to_be_visible()
    name = f"before-{uuid.uuid4().hex[:6]}"
    page.get_by_label("Checkpoint name").fill(name)
    page.get_by_role("button", name="Create checkpoint").click()
    expect(page.locator(f'tr[data-checkpoint="{name}"]')).to_be_visible()

    batch = {
        "name": "rollback_me",
        "version": "1.0.0",
        "storage_backend": "surrealdb",
        "parallel_limit": 2,
        "rollback_enabled": False,
        "operations": [
            {
                "id": "servers",
                "type": "server_batch",
                "provider": "upcloud",
                "dependencies": [],
                "server_configs": [{"name": "rb-01", "plan": "1xCPU-2GB", "zone": "de-fra1"}],
            }
        ],
    }
    resp = requests.post(
        f"{services.orch_url}/batch/execute", json=batch, headers=services.headers(), timeout=T
    )
    assert resp.status_code == 200, resp.text
    console.goto(f"/batches/{resp.json()['data']['batch_id']}")
    expect(page.get_by_test_id("batch-status")).to_have_text("Completed", timeout=LIVE)

    console.goto("/state")
    row = page.locator(f'tr[data-checkpoint="{name}"]')
    row.get_by_role("button", name=f"Roll back to {name}").click()
    dialog = page.get_by_role("dialog", name=f"Roll back to checkpoint {name}?")
    undo = dialog.get_by_test_id("undo-list")
    expect(undo.locator("li")).to_have_count(1)
    expect(undo).to_contain_text("rb-01")
    console.check("rollback-confirmation")
    dialog.get_by_role("button", name="Roll back").click()
    expect(page.get_by_test_id("rollback-result")).to_contain_text("1 operations undone")
    undone = page.get_by_test_id("ledger").locator("tr").filter(has_text="rb-01")
    expect(undone.locator("td").last).to_have_text("Yes")
    console.check("state")


def test_admin_pages_and_audit_filter(console: Console) -> None:
    page = console.page
    console.sign_in_admin()
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Users").click()
    expect(page.get_by_test_id("users")).to_contain_text("admin")
    console.check("users")

    nav.get_by_role("link", name="Policies").click()
    panel = page.get_by_role("form", name="Try a policy decision")
    panel.get_by_label("Action").fill("create")
    panel.get_by_label("Resource").fill("servers:production")
    panel.get_by_label("With roles (comma-separated, optional)").fill("viewer")
    panel.get_by_role("button", name="Evaluate").click()
    expect(page.get_by_test_id("decision")).to_contain_text("Denied")
    console.check("policies")

    nav.get_by_role("link", name="Audit log").click()
    filters = page.get_by_role("form", name="Audit filters")
    filters.get_by_label("Action").fill("auth.login")
    filters.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("audit-caption")).to_have_text("Entries with action auth.login")
    rows = page.get_by_test_id("audit").locator("tbody tr")
    expect(rows.first).to_contain_text("auth.login")
    for action in rows.locator("td:nth-child(3)").all_inner_texts():
        assert action == "auth.login"
    console.check("audit")


def test_an_operator_is_refused_the_admin_pages(console: Console) -> None:
    services = console.services
    name, password = f"op-{uuid.uuid4().hex[:8]}", "Operator-Passw0rd-2"
    create_user(services.cc_url, services.admin_token, name, ["operator"], password)
    page = console.page
    console.sign_in(name, password)
    page.get_by_role("link", name="Not now").click()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Tasks")).to_be_visible()
    expect(nav.get_by_role("link", name="Users")).to_have_count(0)
    expect(nav.get_by_role("link", name="Audit log")).to_have_count(0)
    console.goto("/admin/users")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("do not allow")
    console.check("admin-refused")


def test_session_refreshes_quietly_and_ends_on_revocation(console: Console) -> None:
    services = console.services
    name, password = f"op-{uuid.uuid4().hex[:8]}", "Operator-Passw0rd-3"
    user = create_user(services.cc_url, services.admin_token, name, ["operator"], password)
    page = console.page
    page.clock.install()  # the console's timers, fast-forwarded below
    console.sign_in(name, password)
    page.get_by_role("link", name="Not now").click()
    expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()
    with page.expect_response(lambda r: r.url.endswith("/auth/refresh")) as refreshed:
        page.clock.fast_forward("50:00")  # access tokens live an hour: renewed before
    assert refreshed.value.ok
    console.goto("/state")
    expect(page.get_by_role("heading", name="System health")).to_be_visible()
    expect(page.get_by_text("Overall Status")).to_be_visible()  # with the new token

    resp = requests.put(
        f"{services.cc_url}/users/{user['id']}",
        json={"enabled": False},
        headers=services.headers(),
        timeout=T,
    )
    assert resp.status_code == 200, resp.text
    # /ws closes on the revocation, the refresh is refused: back to the sign-in form
    # at once, without any action in the page.
    expect(page.get_by_role("form", name="Sign in")).to_be_visible(timeout=LIVE)


def test_a_thousand_tasks_render_virtualised(console: Console) -> None:
    page = console.page
    rows = [
        {
            "id": f"00000000-0000-4000-8000-{i:012d}",
            "name": f"task-{i:04d}",
            "command": "/usr/local/provisioning",
            "args": ["servers", "create", "--infra", f"infra-{i}"],
            "dependencies": [],
            "status": "Completed",
            "created_at": "2026-01-01T00:00:00Z",
            "started_at": None,
            "completed_at": None,
            "output": None,
            "error": None,
            "progress": 100.0,
            "attempts": 1,
        }
        for i in range(1000)
    ]
    body = json.dumps({"success": True, "data": rows})
    page.route(
        re.compile(r"/tasks\?.*limit=1000"),
        lambda route: route.fulfill(
            status=200,
            headers={"Content-Type": "application/json", "X-Total-Count": "1000"},
            body=body,
        ),
    )
    console.sign_in_admin()
    page.get_by_label("Per page").select_option("1000")
    expect(page.get_by_text("1\N{EN DASH}1000 of 1000")).to_be_visible()
    rendered = page.locator("tr[data-task-id]")
    assert 0 < rendered.count() < 100  # a window of rows, not a thousand
    region = page.get_by_role("region", name="Task list")
    region.evaluate("el => { el.scrollTop = el.scrollHeight; }")
    expect(page.get_by_role("link", name="task-0999")).to_be_visible()
    assert rendered.count() < 100
    console.check("tasks-1000")


def _tab_to(console: Console, text: str, limit: int = 40) -> None:
    """Press Tab until the focused element's text (or name/label) is ``text``."""
    page = console.page
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            """() => { const e = document.activeElement;
                       return e ? (e.getAttribute('aria-label') || e.textContent || '').trim()
                                  + '|' + (e.getAttribute('name') || '') : ''; }"""
        )
        label, _, name = focused.partition("|")
        if text in (label, name):
            return
    raise AssertionError(f"no focusable element {text!r} within {limit} tabs")


def test_keyboard_only(console: Console) -> None:
    page = console.page
    task_id = _submit(console.services, "keys-sleep60")
    page.goto(console.url)
    expect(page.get_by_role("form", name="Sign in")).to_be_visible()
    _tab_to(console, "username")
    page.keyboard.type("admin")
    _tab_to(console, "password")
    page.keyboard.type(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Set up two-factor authentication")).to_be_visible()
    _tab_to(console, "Not now")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()
    console.goto(f"/tasks/{task_id}")
    expect(page.get_by_test_id("task-status")).to_have_text("Running", timeout=LIVE)
    _tab_to(console, "Cancel task")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Cancel this task?")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")  # asks first: Escape keeps the task running
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("task-status")).to_have_text("Running")
    # Focus goes back to the button; a live update that re-renders the page can move it
    # (known: the console does not restore focus across re-renders), so find it again.
    _tab_to(console, "Cancel task")
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    _tab_to(console, "Cancel task")  # the dialog's confirm button (focus stays inside)
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("task-status")).to_have_text("Cancelled", timeout=LIVE)


# ------------------------------------------------------- resume and approvals


def _execute(services: Services, batch: dict[str, Any], token: str | None = None) -> str:
    resp = requests.post(
        f"{services.orch_url}/batch/execute",
        json=batch,
        headers=services.headers(token),
        timeout=T,
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["data"]["batch_id"])


@pytest.fixture(scope="module")
def flaky(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, Path]]:
    """A control center and an orchestrator of their own whose simulator fails a run
    naming ``flaky-<tag>`` once (``PROVISIONING_SIM_FAIL_ONCE``: the session's
    orchestrator cannot be given it, and a replica sharing its database would not
    decide which one runs the task). The control center lets the orchestrator's
    origin in (CORS), as ``make run`` does. Yields the services and the simulator's
    state directory (its marker files say what already failed once)."""
    state = tmp_path_factory.mktemp("sim-state")
    stack_env = stack.env()
    orch_port = devstack.free_port()
    cc = ServiceProcess(
        "control_center",
        service_env(
            stack_env,
            **TEST_ENV,
            MONGODB_DATABASE=f"cc_{uuid.uuid4().hex[:12]}",
            CORS_ORIGINS=f"http://127.0.0.1:{orch_port}",
        ),
    ).start()
    orch: ServiceProcess | None = None
    try:
        orch_env = {
            **orchestrator_env(cc.url),
            **E2E_ORCH_ENV,
            "MONGODB_DATABASE": f"orch_{uuid.uuid4().hex[:12]}",
            "PROVISIONING_CLI": str(SIMULATOR),
            "PROVISIONING_SIM_DURATION": "0.2",
            "PROVISIONING_SIM_FAIL_ONCE": f"flaky-{state.name}",
            "PROVISIONING_SIM_STATE_DIR": str(state),
            "ENGINE_POLL_SECONDS": "0.1",
            "ENGINE_HEARTBEAT_SECONDS": "1",
            "TASK_KILL_GRACE_SECONDS": "1",
            "ENGINE_SHUTDOWN_GRACE_SECONDS": "1",
            "SHUTDOWN_GRACE_SECONDS": "5",
            "WS_HEARTBEAT_SECONDS": "2",
        }
        orch = ServiceProcess(
            "orchestrator", service_env(stack_env, **orch_env), port=orch_port
        ).start()
        token = str(login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"])
        yield (
            Services(cc=cc, orch=orch, admin_token=token, stack_env=stack_env, orch_env=orch_env),
            state,
        )
    finally:
        if orch is not None:
            orch.stop()
        cc.stop()


def test_resume_a_failed_batch(console: Console, flaky: tuple[Services, Path]) -> None:
    services, state = flaky
    name = f"flaky-{state.name}"
    (state / f"failed-once-{name}").unlink(missing_ok=True)  # fails once more (reruns)
    # The same page (and its problem list), on the stack whose simulator fails once.
    ui = Console(page=console.page, services=services, problems=console.problems)
    page = ui.page
    batch = {
        "name": "resume_me",
        "version": "1.0.0",
        "parallel_limit": 2,
        "operations": [
            {
                "id": "base",
                "type": "server_batch",
                "provider": "upcloud",
                "server_configs": [{"name": "rs-base", "plan": "1xCPU-2GB", "zone": "de-fra1"}],
            },
            {
                "id": "workers",
                "type": "server_batch",
                "provider": "upcloud",
                "dependencies": ["base"],
                "server_configs": [{"name": name, "plan": "1xCPU-2GB", "zone": "de-fra1"}],
            },
        ],
    }
    ui.sign_in_admin()
    first = _execute(services, batch)
    ui.goto(f"/batches/{first}")
    expect(page.get_by_test_id("batch-status")).to_have_text("Failed", timeout=LIVE)
    ops = page.get_by_test_id("batch-operations")
    expect(ops.locator('tr[data-operation-id="base"]')).to_contain_text("Completed")
    expect(ops.locator('tr[data-operation-id="workers"]')).to_contain_text("Failed")

    # Keyboard only: the button, then the dialog's confirm button (focus stays inside).
    _tab_to(ui, "Resume batch")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Resume this batch?")
    expect(dialog).to_be_visible()
    again = dialog.get_by_test_id("resume-list").locator("li")
    expect(again).to_have_count(1)  # what did not complete, not "base"
    expect(again).to_have_text("workers (Failed)")
    ui.check("batch-resume-confirmation")
    _tab_to(ui, "Resume")
    page.keyboard.press("Enter")

    # The new run's live view: linked back, and what failed now completes.
    resumed_from = page.get_by_test_id("resumed-from")
    expect(resumed_from).to_have_text(first)
    second = page.url.split("#/batches/")[1]
    assert second != first
    expect(page.get_by_test_id("batch-status")).to_have_text("Completed", timeout=LIVE)
    expect(ops.locator('tr[data-operation-id="workers"]')).to_contain_text("Completed")
    expect(ops.locator('tr[data-operation-id="base"]')).to_contain_text("base #1 (skipped)")
    expect(page.get_by_test_id("resume-batch")).to_have_count(0)
    ui.check("batch-resumed")

    resumed_from.get_by_role("link").click()
    expect(page.get_by_test_id("resumed-by")).to_have_text(second)
    expect(page.get_by_test_id("batch-status")).to_have_text("Failed")
    expect(page.get_by_test_id("resume-batch")).to_have_count(0)  # resumed once only


def test_approve_a_gate_of_another_users_batch(console: Console) -> None:
    services = console.services
    name, password = f"op-{uuid.uuid4().hex[:8]}", "Operator-Passw0rd-4"
    create_user(services.cc_url, services.admin_token, name, ["operator"], password)
    submitter = str(login(services.cc_url, name, password)["token"])
    tag = uuid.uuid4().hex[:6]
    batch = {
        "name": "gated_release",
        "version": "1.0.0",
        "parallel_limit": 2,
        "operations": [
            {
                "id": "staging",
                "type": "cluster_batch",
                "provider": "upcloud",
                "cluster_type": f"staging-{tag}",
            },
            {
                "id": "go-live",
                "type": "approval",
                "dependencies": ["staging"],
                "approvers": ["admin"],
                "message": "Deploy to production?",
            },
            {
                "id": "production",
                "type": "taskserv_batch",
                "provider": "upcloud",
                "dependencies": ["go-live"],
                "taskservs": [f"prod-{tag}"],
            },
        ],
    }
    page = console.page
    console.sign_in_admin()
    batch_id = _execute(services, batch, token=submitter)  # four-eyes: not the admin's
    console.goto(f"/batches/{batch_id}")
    gate = page.get_by_test_id("approval-go-live")
    expect(gate.get_by_test_id("approval-state")).to_have_text(
        "Waiting for approval", timeout=LIVE
    )  # ApprovalRequested on /ws
    expect(gate.get_by_test_id("approval-message")).to_have_text("Deploy to production?")
    ops = page.get_by_test_id("batch-operations")
    expect(ops.locator('tr[data-operation-id="staging"]')).to_contain_text("Completed")
    expect(ops.locator('tr[data-operation-id="production"]')).to_contain_text("Pending")
    gate.get_by_label("Comment on go-live (optional)").fill("Looks good")
    console.check("batch-approval-waiting")

    gate.get_by_role("button", name="Approve go-live").click()
    dialog = page.get_by_role("dialog", name="Approve go-live?")
    expect(dialog).to_contain_text("Comment: Looks good")
    console.check("batch-approval-confirmation")
    dialog.get_by_role("button", name="Approve", exact=True).click()
    expect(dialog).to_be_hidden()

    expect(gate.get_by_test_id("approval-state")).to_have_text("Approved")
    expect(gate.get_by_test_id("approval-comment")).to_have_text("Looks good")
    expect(gate.get_by_role("button", name="Approve go-live")).to_have_count(0)
    expect(ops.locator('tr[data-operation-id="production"]')).to_contain_text(
        "Completed", timeout=LIVE
    )
    expect(page.get_by_test_id("batch-status")).to_have_text("Completed", timeout=LIVE)
    console.check("batch-approved")
