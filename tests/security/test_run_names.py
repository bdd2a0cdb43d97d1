"""A plan's name becomes a run id: hostile names, end to end through the CLI, the API and pages.

Each name is validated, run to a breakpoint, answered by pasting the printed hint into a real
shell, and looked at in the real `orch serve`: the id is a slug, every hint splits back into the
same arguments, every link of the dashboard answers, and nothing is written outside the project.
A run stored before ids were slugs, with an odd id, stays reachable in the API and the pages.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urljoin

import httpx
import pytest

from orchestration.store import Store
from tests.helpers import PY, orch, shell_task, write_plan
from tests.test_web_api import REVIEW_RULES, Server, bearer, start_server, stop_server

HOSTILE_NAMES = [
    "Fix [/login] redirect",
    "demo $(touch x)",
    "feature/login #42",
    "../../../../outside/x",
]
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*-\d{8}-\d{6}-[0-9a-f]{4}")
EXIT_PAUSED = 3


class Links(HTMLParser):
    """The GET links of a page: `<a href>` and the run page's refresh and stream addresses."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (
                (tag == "a" and name == "href") or name in ("data-refresh", "data-stream")
            ):
                self.found.append(value)


def links_of(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    return [link for link in parser.found if link.startswith("/")]


def make_project(root: Path, name: str) -> Path:
    """A plan called `name`, two levels down, whose second task waits for a review."""
    project = root / "home" / "work" / "project"
    project.mkdir(parents=True)
    (project / "review.yaml").write_text(REVIEW_RULES)
    return write_plan(
        project,
        {
            "version": 1,
            "name": name,
            "rules": ["review.yaml"],
            "tasks": [
                shell_task("first", "pass"),
                shell_task("second", "pass", depends_on=["first"], tags=["review-me"]),
            ],
        },
    )


def hint_after(label: str, text: str) -> str:
    found = re.search(rf"^{re.escape(label)} (.+)$", text, re.MULTILINE)
    assert found is not None, f"no '{label}' hint in:\n{text}"
    return found[1]


def everything_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_plan_name_is_safe_end_to_end(tmp_path: Path, name: str) -> None:
    plan = make_project(tmp_path, name)
    project = plan.parent
    shell_dir = tmp_path / "shell"
    shell_dir.mkdir()

    checked = orch("validate", str(plan))
    assert checked.returncode == 0, checked.stderr
    assert f"plan '{name}' is valid" in checked.stdout  # shown as written, not as markup

    ran = orch("run", str(plan), cwd=shell_dir)
    assert ran.returncode == EXIT_PAUSED, ran.stderr
    db_url = f"sqlite:///{project / '.orchestration' / 'state.db'}"
    status = json.loads(orch("status", "--db", db_url, "--json", cwd=shell_dir).stdout)
    run_id = status["run"]["id"]
    assert SAFE_ID.fullmatch(run_id), run_id
    assert status["run"]["plan"] == name  # the name is kept for display
    assert status["run"]["state"] == "paused"

    # every printed command splits back into the arguments meant
    review = shlex.split(hint_after("Review with:", ran.stderr))
    assert review[:3] == ["orch", "breakpoints", "show"] and review[-2:] == ["--db", db_url]
    then = hint_after("Then:", ran.stderr)
    resolve_part, resume_part = then.split(" && ")
    assert shlex.split(resume_part) == ["orch", "resume", run_id, "--db", db_url]
    assert shlex.split(resolve_part)[:4] == ["orch", "breakpoints", "resolve", review[3]]

    # pasted into a real shell, the hint answers the breakpoint and finishes the run
    pasted = subprocess.run(
        ["bash", "-c", then.replace("orch ", f"{shlex.quote(PY)} -m orchestration ")],
        cwd=shell_dir,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert pasted.returncode == 0, pasted.stderr
    assert json.loads(orch("status", run_id, "--db", db_url, "--json").stdout)["run"]["state"] == (
        "completed"
    )
    assert everything_under(shell_dir) == set()  # `$(touch x)` ran nowhere

    # nothing outside the project
    outside = everything_under(tmp_path) - everything_under(project)
    project_parts = {"home", "home/work", "home/work/project", "shell"}
    assert {p for p in outside if not p.startswith("home/work/project/")} == project_parts

    server = start_server(db_url, tmp_path / "token")
    try:
        check_api_and_pages(server, run_id, name)
    finally:
        stop_server(server)


def check_api_and_pages(server: Server, run_id: str, name: str) -> None:
    with httpx.Client(base_url=server.base, headers=bearer(server.token), timeout=10) as client:
        runs = client.get("/api/v1/runs").json()["runs"]
        assert [r["id"] for r in runs] == [run_id]
        one = client.get(f"/api/v1/runs/{quote(run_id, safe='')}")
        assert one.status_code == 200 and one.json()["run"]["plan"] == name
        pages = ["/runs", f"/runs/{quote(run_id, safe='')}", "/breakpoints?state=all"]
        seen: set[str] = set()
        for page in pages:
            answer = client.get(page)
            assert answer.status_code == 200, page
            for link in links_of(answer.text):
                if link in seen or link.startswith("/api/v1/openapi"):
                    continue
                seen.add(link)
                target = urljoin(server.base + page, link)
                if "/events/stream" in link:
                    with client.stream("GET", target, params={"max_seconds": 1}) as stream:
                        assert stream.status_code == 200, link
                    continue
                assert client.get(target).status_code == 200, link
        assert any(quote(run_id, safe="") in link for link in seen)


def test_a_stored_run_with_an_odd_id_stays_reachable(tmp_path: Path) -> None:
    """Runs made before ids were slugs keep their ids: the API, the pages and the CLI reach
    them, and the hints quote them."""
    plan = make_project(tmp_path, "plain")
    project = plan.parent
    db_url = f"sqlite:///{project / '.orchestration' / 'state.db'}"
    assert orch("run", str(plan)).returncode == EXIT_PAUSED
    odd = "feature/login #42 [x] $(touch y)"
    with Store.open(db_url) as store:
        made = store.latest_run()
        assert made is not None
        tasks = [replace(t, run_id=odd) for t in store.tasks(made.id)]
        store.create_run(replace(made, id=odd), tasks)
    shown = orch("status", odd, "--db", db_url)
    assert shown.returncode == 0, shown.stderr
    assert odd in shown.stdout
    server = start_server(db_url, tmp_path / "token")
    try:
        with httpx.Client(base_url=server.base, headers=bearer(server.token), timeout=10) as c:
            encoded = quote(odd, safe="")
            detail = c.get(f"/api/v1/runs/{encoded}")
            assert detail.status_code == 200 and detail.json()["run"]["id"] == odd
            task = c.get(f"/api/v1/runs/{encoded}/tasks/second")
            assert task.status_code == 200 and task.json()["task"]["id"] == "second"
            page = c.get(f"/runs/{encoded}")
            assert page.status_code == 200
            assert f'href="/runs/{encoded}/tasks/second"' in page.text
            skipped = c.post(
                f"/api/v1/runs/{encoded}/interventions",
                json={"action": "skip", "task": "second", "reason": "not needed"},
            )
            assert skipped.status_code == 200, skipped.text
            command = skipped.json()["next"].split("Continue with: ", 1)[1]
            assert shlex.split(command) == ["orch", "resume", odd, "--db", db_url]
            listing = c.get("/runs").text
            assert f'href="/runs/{encoded}"' in listing
            # an id holding a literal percent sign is one segment too
            assert c.get(f"/api/v1/runs/{quote('no%20such', safe='')}").status_code == 404
    finally:
        stop_server(server)
    shell_dir = tmp_path / "shell"
    shell_dir.mkdir()
    pasted = subprocess.run(
        ["bash", "-c", command.replace("orch ", f"{shlex.quote(PY)} -m orchestration ", 1)],
        cwd=shell_dir,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert pasted.returncode == 0, pasted.stderr
    assert everything_under(shell_dir) == set()
