"""A breakpoint resolved through the API with `rollback`: the same rejection and rollback as
`orch breakpoints resolve --reject --rollback` (review_actions), on a real git project."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import orch, orch_json
from tests.test_e2e_coding import FAST, GOOD, git, session
from tests.test_e2e_coding import project as project  # the fixture, used by name
from tests.test_web_api import Dashboard, make_client


def test_the_api_rejects_with_a_rollback_to_the_last_accepted_checkpoint(project: Path) -> None:
    plan = session(project)
    git(project, "add", "plan.yaml")
    git(project, "commit", "-q", "-m", "plan")
    head = git(project, "rev-parse", "HEAD")
    ran = orch("run", str(plan), env=FAST, cwd=project)
    assert ran.returncode == 3, ran.stdout + ran.stderr
    (bp,) = orch_json("breakpoints", "list", cwd=project)["breakpoints"]
    url = f"sqlite:///{project / '.orchestration' / 'state.db'}"
    for client in make_client(url):
        dash = Dashboard(client, url)
        path = f"/api/v1/breakpoints/{bp['id']}/resolve"
        refused = dash.post(path, {"resolution": "retry", "rollback": True})
        assert refused.status_code == 400, refused.text
        assert "rollback goes with a rejection" in refused.json()["error"]["message"]
        done = dash.post(path, {"resolution": "reject", "rollback": True, "note": "regression"})
        assert done.status_code == 200, done.text
        answer = done.json()
    assert answer["task_state"] == "cancelled"
    assert answer["breakpoint"]["resolution"] == "reject"
    assert "restored to the checkpoint after power" in answer["rolled_back"]
    assert "orch rollback" in answer["rolled_back"]  # and how to undo it
    assert "return a + b" in (project / "calc" / "__init__.py").read_text()  # regression gone
    assert (project / "calc" / "extra.py").read_text() == GOOD  # the accepted work stays
    assert git(project, "rev-parse", "HEAD") == head  # the user's branch did not move
