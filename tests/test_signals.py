"""Review signals computed from a step's evidence: real git trees, detect-secrets and griffe."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestration.project.api_changes import breaking_changes, touched_packages
from orchestration.rules.signals import (
    StepText,
    change_budget,
    destructive_operations,
    is_auth_failure,
    newly_skipped_tests,
    removed_tests,
    secrets_in,
    step_diff,
    step_signals,
)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def tree_of(repo: Path) -> str:
    git(repo, "add", "-A")
    return git(repo, "write-tree")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    return tmp_path


def test_a_diff_gives_added_removed_lines_and_deleted_files(repo: Path) -> None:
    (repo / "tests").mkdir()
    (repo / "tests" / "test_pay.py").write_text(
        "def test_charges_once():\n    assert True\n\n\ndef test_refunds():\n    assert True\n"
    )
    (repo / "tests" / "test_old.py").write_text("def test_legacy():\n    pass\n")
    before = tree_of(repo)
    (repo / "tests" / "test_old.py").unlink()
    (repo / "tests" / "test_pay.py").write_text(
        "import pytest\n\n\ndef test_charges_once():\n    assert True\n\n\n"
        "@pytest.mark.skip(reason='flaky')\ndef test_refunds_renamed():\n    assert True\n"
    )
    (repo / "config.yaml").write_text("stripe_api_key: sk_live_51HqLyjWDarjtT1zdp7dcXbD2vQ\n")
    step = step_diff(repo, before, tree_of(repo))
    assert step.deleted_files == ("tests/test_old.py",)
    assert "def test_legacy():" in step.removed["tests/test_old.py"]
    # the deleted file, and test_refunds removed (test_refunds_renamed is another name)
    assert removed_tests(step) == 2
    assert newly_skipped_tests(step) == 1
    assert secrets_in(step.added) == ("config.yaml: Stripe Access Key",)


def test_a_renamed_test_is_not_counted_as_removed() -> None:
    step = StepText(
        added={"tests/test_a.py": ("def test_keeps_order():",)},
        removed={"tests/test_a.py": ("def test_keeps_order():", "def test_other():")},
    )
    assert removed_tests(step) == 1  # test_other went; test_keeps_order only moved
    assert removed_tests(StepText(added={}, removed={"src/x.py": ("def test_like():",)})) == 1


def test_skip_markers_of_several_stacks_and_removed_markers_offset_added_ones() -> None:
    added = ("it.skip('loads', () => {})", 't.Skip("later")', "#[ignore]", "@Disabled")
    assert newly_skipped_tests(StepText(added={"a": added})) == 4
    moved = StepText(added={"a": ("@pytest.mark.xfail",)}, removed={"a": ("@pytest.mark.xfail",)})
    assert newly_skipped_tests(moved) == 0


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("DROP TABLE analytics.orders CASCADE;", ("drop_table", "cascade")),
        ("op.drop_column('invoices', 'legacy_total')", ("drop_column",)),
        ("Drop the legacy_total column from invoices", ("drop_column",)),
        ("git push --force origin main", ("force_push",)),
        ("git reset --hard origin/main", ("history_rewrite",)),
        ("rm -rf src/legacy", ("recursive_delete",)),
        ("DELETE FROM users;", ("delete_all_rows", "purge")),
        ("Purge soft-deleted customer accounts", ("purge",)),
        ("terraform destroy -auto-approve", ("terraform_destroy",)),
        ("rm -rf node_modules dist && npm ci", ()),
        ("DELETE FROM sessions WHERE expires_at < now();", ()),
        ("git push origin feature/login", ()),
        ("the cascade of CSS layers", ()),
    ],
)
def test_destructive_operations_are_named(text: str, names: tuple[str, ...]) -> None:
    assert destructive_operations([text]) == names


def test_a_plan_adds_its_own_destructive_patterns() -> None:
    extra = {"flush_queue": r"(?i)\bflush\s+the\s+queue\b"}
    assert destructive_operations(["now flush the queue"], extra) == ("flush_queue",)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("HTTP 401 Unauthorized: the personal access token has been revoked", True),
        ("Error: 403 Forbidden: token lacks the 'repo' scope", True),
        ("fatal: Authentication failed for 'https://github.com/acme/app.git/'", True),
        ("Error: credentials have expired (ExpiredToken)", True),
        ("openai.AuthenticationError: invalid_api_key", True),
        ("AssertionError: expected 3 == 4", False),
        ("Error: 429 Too Many Requests", False),
    ],
)
def test_authentication_failures_are_recognised(output: str, expected: bool) -> None:
    assert is_auth_failure(output) is expected


def test_secrets_by_kind_and_no_noise_from_ordinary_code() -> None:
    found = secrets_in(
        {
            "docs/deploy.md": ("GITHUB_TOKEN=ghp_9fT2kLm4Qx7Rb1Zc8Vn3Hs6Jd0Wy5Ue2Pa4o",),
            "deploy/key": ("-----BEGIN OPENSSH PRIVATE KEY-----",),
            "src/app.py": ("total = compute(order, discount=0.1)", "password = os.environ['PW']"),
        }
    )
    assert found == ("docs/deploy.md: GitHub Token", "deploy/key: Private Key")


def test_step_signals_read_the_command_prompt_diff_and_output() -> None:
    step = StepText(
        command="psql -c 'TRUNCATE TABLE audit_log'",
        prompt="clean the staging data",
        output="remote: Invalid username or token.\nfatal: Authentication failed",
        added={"README.md": ("AWS key: AKIAIOSFODNN7EXAMPLE",)},
    )
    signals = step_signals(step)
    assert signals["destructive_operations"] == ("truncate",)
    assert signals["auth_failure"] is True
    assert signals["secrets_added"] == ("README.md: AWS Access Key",)


def test_change_budget_prefers_the_line_budget() -> None:
    assert change_budget(None, None) == 0
    assert change_budget("small", None) == 150
    assert change_budget("large", 40) == 40


def test_public_api_breaks_between_two_trees_without_touching_the_tree(repo: Path) -> None:
    package = repo / "src" / "shop"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "def total(items, discount=0):\n    return 0\n\n\ndef keep(x):\n    return x\n"
    )
    (package / "_private.py").write_text("def helper(a):\n    return a\n")
    before = tree_of(repo)
    (package / "__init__.py").write_text("def total(items):\n    return 0\n")
    (package / "_private.py").write_text("def helper():\n    return 1\n")
    after = tree_of(repo)
    status = git(repo, "status", "--porcelain")
    changed = ["src/shop/__init__.py", "src/shop/_private.py"]
    found = breaking_changes(repo, before, after, changed)
    assert any("total(discount)" in line and "removed" in line for line in found), found
    assert any(line.startswith("src/shop/__init__.py") and "keep" in line for line in found)
    assert not any("helper" in line for line in found)  # private module: not public API
    assert git(repo, "status", "--porcelain") == status  # nothing written to the work tree


def test_only_touched_public_packages_are_compared() -> None:
    files = ["src/shop/a.py", "tests/test_a.py", "docs/x.md", "_tools/x.py", "lib/core/y.py"]
    assert touched_packages(files) == {"shop": "src", "lib": ""}


def test_a_text_searched_again_gets_the_same_names_and_a_timeout_is_not_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestration.core import bounded_regex
    from orchestration.rules import signals

    text = "git push --force origin main && now flush the queue"
    first = destructive_operations([text])
    assert destructive_operations([text]) == first  # answered by the memo
    extra = {"flush_queue": r"flush the queue"}
    assert destructive_operations([text], extra) == (*first, "flush_queue")  # other patterns

    def times_out(pattern: str, text: str, where: str = "") -> bool:
        raise bounded_regex.PatternTimeout(pattern, where)

    monkeypatch.setattr(bounded_regex, "search", times_out)
    cut_short = "rm -rf / once the search is slow"
    assert destructive_operations([cut_short]) == ()
    monkeypatch.undo()
    assert destructive_operations([cut_short]) != ()  # searched again, not the timed-out answer
    assert (cut_short, tuple(signals.DESTRUCTIVE_PATTERNS.items())) in signals._DESTRUCTIVE_MEMO
