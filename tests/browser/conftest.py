"""Browser tests of the operator console: Playwright (Python) driving Debian's Chromium
(``/usr/bin/chromium``, never Playwright's own download) against the real stack.

- ``console_services`` (session scope): a control center whose ``CORS_ORIGINS`` is the
  orchestrator's origin (as ``make run`` sets it) and an orchestrator serving the built
  console under ``/ui/``; otherwise the e2e stack (``tests/e2e/conftest.py``'s
  :class:`Services`, its env and helpers).
- ``browser`` (module scope): one headless Chromium per module.
- ``page``: a fresh context (nothing shared: tokens live in page memory only), failing
  the test on any Content-Security-Policy violation or uncaught page error.
- ``console``: a :class:`Console` with ``sign_in``, ``goto``, ``check`` (screenshot under
  ``test-artifacts/browser/`` + an axe-core scan with no serious/critical violation).

Skipped with a reason only when Chromium is absent and ``CI`` is not set; in CI they run
(and fail if something is missing)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import E2E_ORCH_ENV, Services
from tests.support.control_center import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    TEST_ENV,
    login,
    orchestrator_env,
)
from tests.support.orchestrator import start_orchestrator
from tests.support.processes import ServiceProcess, service_env
from tests.support.stack import ROOT, devstack

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", ROOT / "test-artifacts")) / "browser"
README_IMAGES = ROOT / "docs" / "images"
AXE_JS = ROOT / "console" / "node_modules" / "axe-core" / "axe.min.js"
DIST = ROOT / "console" / "dist"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _chromium() -> str | None:
    found: str | None = devstack.chromium_binary()
    return found


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IN_CI or _chromium():
        return
    skip = pytest.mark.skip(reason="Chromium is not installed (make setup installs it; CI runs)")
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def console_services(stack: Any) -> Iterator[Services]:
    if not (DIST / "index.html").is_file():
        pytest.fail(f"the console is not built ({DIST}): run make setup")
    stack_env = stack.env()
    cc_port = devstack.free_port()
    cc_url = f"http://127.0.0.1:{cc_port}"
    orch_env = {
        **orchestrator_env(cc_url),
        **E2E_ORCH_ENV,
        "MONGODB_DATABASE": f"orch_{uuid.uuid4().hex[:12]}",
    }
    orch = start_orchestrator(stack_env, **orch_env)
    cc: ServiceProcess | None = None
    try:
        cc_env = {
            **TEST_ENV,
            "MONGODB_DATABASE": f"cc_{uuid.uuid4().hex[:12]}",
            "CORS_ORIGINS": orch.url,
        }
        cc = ServiceProcess("control_center", service_env(stack_env, **cc_env), port=cc_port)
        cc.start()
        token = str(login(cc.url, ADMIN_USERNAME, ADMIN_PASSWORD)["token"])
        yield Services(cc=cc, orch=orch, admin_token=token, stack_env=stack_env, orch_env=orch_env)
    finally:
        orch.stop()
        if cc is not None:
            cc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    if executable is None:
        pytest.fail("Chromium is not installed (CI=true): make setup installs Debian's chromium")
    with sync_playwright() as pw:
        instance = pw.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield instance
        finally:
            instance.close()


@dataclass
class Console:
    page: Any
    services: Services
    problems: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.services.orch_url}/ui/"

    def goto(self, route: str) -> None:
        """Client-side navigation (the session lives in the page's memory)."""
        self.page.evaluate("r => { window.location.hash = r; }", route)

    def sign_in(self, username: str, password: str, code: str | None = None) -> None:
        from playwright.sync_api import expect

        if not self.page.url.startswith(self.url):
            self.page.goto(self.url)
        form = self.page.get_by_role("form", name="Sign in")
        expect(form).to_be_visible()
        form.get_by_label("Username").fill(username)
        form.get_by_label("Password").fill(password)
        if code is not None:
            form.get_by_label("Authentication code").fill(code)
        form.get_by_role("button", name="Sign in").click()

    def sign_in_admin(self) -> None:
        from playwright.sync_api import expect

        self.sign_in(ADMIN_USERNAME, ADMIN_PASSWORD)
        # The bootstrap admin has no second factor: the console offers it, not now.
        not_now = self.page.get_by_role("link", name="Not now")
        expect(not_now).to_be_visible()
        not_now.click()
        expect(self.page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()

    def check(self, name: str, *, readme: str | None = None) -> None:
        """Screenshot the page and scan it with axe-core (no serious/critical issue)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        if readme and os.environ.get("UPDATE_README_SCREENSHOTS") == "1":
            README_IMAGES.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(README_IMAGES / readme), full_page=False)
        if not self.page.evaluate("() => typeof window.axe === 'object'"):
            self.page.evaluate(AXE_JS.read_text())
        result = self.page.evaluate(
            """async () => {
                const r = await axe.run(document, {resultTypes: ['violations']});
                return r.violations
                    .filter(v => v.impact === 'serious' || v.impact === 'critical')
                    .map(v => ({id: v.id, impact: v.impact, help: v.help,
                                nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}));
            }"""
        )
        assert result == [], f"axe on {name}: {result}"
        assert self.problems == [], f"page problems on {name}: {self.problems}"


@pytest.fixture
def console(browser: Any, console_services: Services) -> Iterator[Console]:
    if not AXE_JS.is_file():
        pytest.fail(f"axe-core is missing ({AXE_JS}): run make setup")
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    ui = Console(page=page, services=console_services)

    def on_console(message: Any) -> None:
        if "Content Security Policy" in message.text:
            ui.problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: ui.problems.append(f"page error: {exc}"))
    try:
        yield ui
    finally:
        context.close()
