"""The dashboard in a real browser: Playwright drives Debian's chromium against `orch serve`.

Two reviews, as a user does them: the demo paused at its breakpoint (approve in the page, then
`orch resume`, and the page follows the run to the end), and a run still working while a step
waits for review (approve in the page; the working engine goes on by itself). Screenshots are
written to $ORCH_ARTIFACTS (default: the test's tmp dir); with ORCH_UPDATE_DOC_IMAGES=1 they
also replace docs/images/dashboard-*.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestration.cli.demo import copy_example, init_git
from orchestration.store import Store
from tests.helpers import GATE_WAIT_LIMIT_S, orch, orch_in_background, shell_task, write_plan
from tests.test_web_api import Server, start_server, stop_server

pytestmark = pytest.mark.slow

REQUIRE_ENV = "ORCH_REQUIRE_BROWSER"  # set: a missing chromium fails the test instead of skipping
DOCS_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
WAIT_MS = 30_000  # the longest any step of the review waits in the browser
# The longest a wait that includes an `orch` process starting and working may take: a busy
# machine needs seconds to start it.
ENGINE_WAIT_MS = 120_000
VIEWPORT = {"width": 1360, "height": 900}


def _required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").lower() not in ("", "0", "false")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        if _required():
            pytest.fail(f"{REQUIRE_ENV} is set but Playwright is missing: {error}", pytrace=False)
        pytest.skip("Playwright is not installed")
    if chromium is None:
        if _required():
            pytest.fail(f"{REQUIRE_ENV} is set but chromium is not on PATH", pytrace=False)
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ORCH_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(page: Any, artifacts: Path, name: str) -> None:
    path = artifacts / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("ORCH_UPDATE_DOC_IMAGES"):
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / path.name)


def log_in(page: Any, server: Server, name: str) -> None:
    page.goto(server.base + "/")
    page.wait_for_url("**/login?**")
    page.fill("input[name=token]", server.token)
    page.fill("input[name=name]", name)
    page.click("button[type=submit]")
    page.wait_for_url(server.base + "/")


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def follow_run(page: Any) -> None:
    """Wait until the run page listens to the event stream."""
    page.wait_for_selector("#live-indicator[data-connected='1']", timeout=WAIT_MS)


def test_review_the_paused_demo_in_the_browser_then_watch_the_run_finish(
    browser: Any, tmp_path: Path, artifacts: Path
) -> None:
    plan = copy_example(tmp_path / "demo")
    init_git(plan.parent / "project")
    db = f"sqlite:///{tmp_path / 'demo' / '.orchestration' / 'state.db'}"
    paused = orch("run", str(plan), "--run-id", "demo", "--db", db, "--quiet")
    assert paused.returncode == 3, paused.stderr
    server = start_server(db, tmp_path / "token")
    resumed = None
    try:
        page = browser.new_page(viewport=VIEWPORT)
        log_in(page, server, "alice")
        page.click("a[href='/runs/demo']")
        follow_run(page)
        assert page.inner_text("#run-state") == "paused"
        assert page.is_visible("svg.task-graph g.state-blocked[data-task='design-storage']")
        page.click("a.review-link")
        page.wait_for_selector("#resolve-form")
        assert "architecture_decision" in page.inner_text("main")
        assert "The step has not run yet" in page.inner_text("main")
        screenshot(page, artifacts, "review")
        page.fill("textarea[name=note]", "a JSON file is fine for now")
        page.click("button[value=approve]")
        notice = page.wait_for_selector("#resolved-notice", timeout=WAIT_MS)
        assert "Resolved: approve" in notice.inner_text()
        assert f"orch resume demo --db {db}" in notice.inner_text()
        page.click("#resolved-notice a[href='/runs/demo']")
        follow_run(page)
        resumed = orch_in_background("resume", "demo", "--db", db, "--quiet")
        expect(page.locator("#run-state")).to_have_text("completed", timeout=ENGINE_WAIT_MS)
        assert page.inner_text(".tile.state-completed .n") == "5"
        assert page.locator("svg.timeline rect.outcome-retrying").count() == 1  # implement, once
        screenshot(page, artifacts, "run")
        _, stderr = resumed.communicate(timeout=ENGINE_WAIT_MS / 1000)
        assert resumed.returncode == 0, stderr
    finally:
        if resumed is not None and resumed.poll() is None:
            resumed.kill()
        stop_server(server)
    with Store.open(db) as store:
        (bp,) = store.breakpoints("demo")
        assert (bp.resolution, bp.resolved_by, bp.note) == (
            "approve",
            "alice",
            "a JSON file is fine for now",
        )
        assert {t.state for t in store.tasks("demo")} == {"completed"}


def test_approve_a_step_while_the_engine_works_and_it_goes_on_by_itself(
    browser: Any, tmp_path: Path, artifacts: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.py").write_text("def greet(name):\n    return 'hello ' + name\n")
    for args in (["init", "-q"], ["add", "-A"]):
        subprocess.run(["git", *args], cwd=work, check=True, capture_output=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start"],
        cwd=work,
        check=True,
        capture_output=True,
    )
    write_login = (
        "open('auth.py', 'w').write('import hmac\\n\\n\\ndef check_password(given, stored):\\n"
        "    return hmac.compare_digest(given, stored)\\n')"
    )
    # `keep-working` holds the engine busy until `after` (which needs the review) has run.
    keep_working = (
        "import pathlib, time\n"
        f"deadline = time.monotonic() + {GATE_WAIT_LIMIT_S}\n"
        "while not pathlib.Path('reviewed').exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
    )
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "live-review",
            "workdir": "work",
            "isolation": "shared",  # `keep-working` waits for a file `after` writes
            "concurrency": {"max_workers": 2},
            "defaults": {"validators": ["python_syntax"]},
            "tasks": [
                shell_task("add-login", write_login, tags=["security"], title="Check passwords"),
                shell_task("keep-working", keep_working),
                shell_task("after", "open('reviewed', 'w').close()", depends_on=["add-login"]),
            ],
        },
    )
    db = f"sqlite:///{tmp_path / 'state.db'}"
    running = orch_in_background("run", str(plan), "--run-id", "live", "--db", db, "--quiet")
    server = start_server(db, tmp_path / "token")
    try:
        bp_id = wait_for_breakpoint(server, running)
        page = browser.new_page(viewport=VIEWPORT)
        log_in(page, server, "bob")
        page.goto(f"{server.base}/breakpoints/{bp_id}")
        page.wait_for_selector("#resolve-form")
        diff = page.inner_text("pre.diff")
        assert "+def check_password(given, stored):" in diff
        assert "security_sensitive_change" in page.inner_text("main")
        assert page.locator("table.checks").inner_text().count("python_syntax") == 1
        screenshot(page, artifacts, "review-diff")
        page.click("button[value=approve]")
        notice = page.wait_for_selector("#resolved-notice", timeout=WAIT_MS)
        assert "picks it up by itself" in notice.inner_text()
        page.click("#resolved-notice a[href='/runs/live']")
        follow_run(page)
        expect(page.locator("#run-state")).to_have_text("completed", timeout=ENGINE_WAIT_MS)
        _, stderr = running.communicate(timeout=ENGINE_WAIT_MS / 1000)
        assert running.returncode == 0, stderr
    finally:
        if running.poll() is None:
            running.kill()
        stop_server(server)


def wait_for_breakpoint(server: Server, running: Any) -> int:
    """Poll the API until the working run stops a step for review."""
    deadline = time.monotonic() + ENGINE_WAIT_MS / 1000
    headers = {"Authorization": f"Bearer {server.token}"}
    while time.monotonic() < deadline:
        assert running.poll() is None, running.communicate()[1]
        found = httpx.get(f"{server.base}/api/v1/breakpoints", headers=headers, timeout=30)
        breakpoints = found.json()["breakpoints"]
        if breakpoints:
            run = httpx.get(f"{server.base}/api/v1/runs/live", headers=headers, timeout=30)
            assert run.json()["run"]["live"] is True
            return int(breakpoints[0]["id"])
        time.sleep(0.1)
    raise AssertionError("no breakpoint was raised")
