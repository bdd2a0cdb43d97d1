"""Review signals: what a senior reviewer looks for in a step, computed from its evidence.

Each signal is a plain value added to the rule context (docs/rules.md, "Review signals"): tests
removed or newly skipped, secrets in added lines (detect-secrets), destructive operations in the
command, prompt, diff or output, authentication failures, and the size of the change against the
task's declared scope. The public-API signal lives in `api_changes` (it needs griffe and git).
The same functions back the rule functions `secrets_in`, `destructive_in` and `auth_failure_in`,
so a context that carries only text (a labelled step in `orch rules test`) is judged alike.
"""

from __future__ import annotations

import itertools
import logging
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from orchestration.core import bounded_regex
from orchestration.core.safe_git import run_git

logger = logging.getLogger(__name__)

MAX_SCANNED_CHARS = 200_000  # of one text; a longer one is scanned in its first part
MAX_SECRET_LINES = 5_000  # added lines handed to detect-secrets per step (about 0.7 ms a line)
MAX_DIFF_BYTES = 4_000_000  # of a step's diff read for the signals; the rest is not scanned
GIT_TIMEOUT_SECONDS = 60

# Named destructive operations. Plans add their own under `signals.destructive_patterns`.
DESTRUCTIVE_PATTERNS: dict[str, str] = {
    "drop_table": r"(?i)\bdrop\s+(table|database|schema|view|index)\b",
    "drop_column": r"(?i)\b(drop|remove)\s+(the\s+)?([\w\"`.-]+\s+)?columns?\b"
    r"|\bop\.drop_column\(|\bremove_column\b|\bdropColumn\(",
    "truncate": r"(?i)\btruncate\s+(table\s+)?[\w.\"`]+",
    "delete_all_rows": r"(?i)\bdelete\s+from\s+[\w.\"`]+\s*(;|$)",
    "cascade": r"(?i)\bdrop\b[^;\n]*\bcascade\b|\bdrop cascades to\b",
    "force_push": r"(?i)\bgit\s+push\b[^\n]*\s(-f\b|--force\b|--force-with-lease\b|\+\w)",
    "history_rewrite": r"(?i)\bgit\s+(reset\s+--hard|clean\s+-[a-z]*f|filter-branch|filter-repo)\b",
    # build output and caches are fair game; anything else removed recursively is not
    "recursive_delete": r"(?i)\brm\s+-[a-z]*r[a-z]*\s+(?!(\S*/)?(node_modules|build|dist|target|"
    r"\.cache|__pycache__|tmp|\.venv|venv|coverage|\.pytest_cache|out|\.next|\.tox)\b)"
    r"|\bshutil\.rmtree\(|\bgit\s+rm\s+-r\b",
    "purge": r"(?i)\b(purge|wipe|erase|delete)\s+(all\s+)?(the\s+)?([\w-]+\s+){0,2}"
    r"(data|records?|rows|users?|accounts?|customers?|tables?|database|bucket|backups?|logs|history)\b",
    "bucket_delete": r"(?i)\b(aws\s+s3\s+rb|gsutil\s+rm\s+-r|s3\s+rm\s+[^\n]*--recursive)\b",
    "flush_cache_db": r"(?i)\b(flushall|flushdb|dropdb|db\.dropDatabase\(\))",
    "terraform_destroy": r"(?i)\b(terraform|tofu|pulumi)\s+destroy\b"
    r"|\bkubectl\s+delete\s+(ns|namespace|pvc|pv)\b",
}

# An authentication or authorisation failure: retries cannot fix a revoked or missing credential.
AUTH_FAILURE_PATTERN = (
    r"(?i)\b(401|403)\s+(unauthori[sz]ed|forbidden)\b|\bHTTP\s*(error\s*)?(401|403)\b"
    r"|\bstatus(\s+code)?[:=\s]+(401|403)\b|\b(unauthori[sz]ed|forbidden)\s*[:(]"
    r"|\binvalid[_ ](api[_ ]?key|token|credentials?|x-api-key)\b|\b(token|credentials?|api key)\s+"
    r"(has\s+been\s+|have\s+|had\s+|was\s+|is\s+)?(revoked|expired|invalid)\b|\bauthentication\s+(failed|required)\b"
    r"|\bpermission denied \(publickey\)|\bbad credentials\b|\baccess denied\b"
    r"|\bnot authori[sz]ed\b|\bincorrect api key\b|\b(ExpiredToken|InvalidClientTokenId"
    r"|InvalidAccessKeyId|SignatureDoesNotMatch|UnrecognizedClientException)\b"
)

TEST_FILE = re.compile(
    r"(^|/)(tests?|__tests__|spec|specs)/|(^|/)test_[^/]*\.py$|_test\.(py|go)$"
    r"|\.(test|spec)\.[jt]sx?$|Test\.java$|_spec\.rb$"
)
TEST_FUNCTION = re.compile(
    r"^\s*(async\s+)?def\s+(test_\w+)|^\s*(it|test)\s*\(\s*['\"`]([^'\"`]+)|^\s*func\s+(Test\w+)"
    r"|^\s*@Test\b"
)
SKIP_MARKER = re.compile(
    r"@pytest\.mark\.(skip|skipif|xfail)\b|\bpytest\.(skip|xfail)\(|@unittest\.skip"
    r"|\b(it|test|describe)\.(skip|todo)\(|\bx(it|describe|test)\(|\bt\.Skip(Now|f)?\(|@Disabled\b"
    r"|@Ignore\b|#\[ignore\]"
)

# A cheap first look: only lines with something the enabled detectors react to (a keyword, a
# known key prefix, a key header, credentials in a URL) go to detect-secrets, ~0.7 ms a line.
SECRET_HINT = re.compile(
    r"(?i)key|token|secret|passw|pwd|auth|credential|bearer|private|AKIA|ASIA|BEGIN|ghp_|gho_"
    r"|github_pat|glpat|sk_live|rk_live|xox[abpr]|eyJ|npm_|pypi-|SG\.|AIza|://[^/\s:@]+:[^/\s@]+@"
    r"|discord|twilio|SK[0-9a-f]{32}|mailchimp|[0-9a-f]{32}-us[0-9]+|sq0|artifactory|AKC"
)

# Lines a task may change for its declared `expected_change`.
CHANGE_BUDGETS = {"small": 150, "medium": 800, "large": 5_000}


@dataclass(frozen=True, slots=True)
class StepText:
    """The text evidence of one step: what the action was told, ran, printed and changed."""

    command: str = ""
    prompt: str = ""
    output: str = ""
    added: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # path -> added lines
    removed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # path -> removed lines
    deleted_files: tuple[str, ...] = ()


def _search(pattern: str, text: str, timeouts: list[str] | None = None) -> bool:
    """A bounded search: a pattern that runs too long counts as no match, with a warning (and
    the pattern appended to `timeouts`)."""
    try:
        return bounded_regex.search(pattern, text[:MAX_SCANNED_CHARS], where="review signals")
    except bounded_regex.PatternTimeout as timeout:
        logger.warning("%s; ignored", timeout)
        if timeouts is not None:
            timeouts.append(pattern)
        return False


# Texts already searched for destructive operations, with what was found: a task's command and
# prompt are searched before and after each of its attempts, and steps that print nothing repeat
# the same text; a dozen patterns each time was about a tenth of a no-op step. Short texts only
# (a memo must not hold large outputs), and never an answer a timeout cut short.
_DESTRUCTIVE_MEMO: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, ...]] = {}
MEMO_MAX_ENTRIES = 1_024
MEMO_MAX_CHARS = 4_096


def destructive_operations(
    texts: Iterable[str], extra: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The names of the destructive operations any of `texts` announces or performs."""
    patterns = {**DESTRUCTIVE_PATTERNS, **dict(extra or {})}
    joined = "\n".join(t for t in texts if t)
    if not joined:
        return ()
    key = (joined, tuple(patterns.items())) if len(joined) <= MEMO_MAX_CHARS else None
    cached = _DESTRUCTIVE_MEMO.get(key) if key is not None else None
    if cached is not None:  # one read: another thread may clear the memo meanwhile
        return cached
    timeouts: list[str] = []
    found = tuple(name for name, pattern in patterns.items() if _search(pattern, joined, timeouts))
    if key is not None and not timeouts:
        if len(_DESTRUCTIVE_MEMO) >= MEMO_MAX_ENTRIES:
            _DESTRUCTIVE_MEMO.clear()
        _DESTRUCTIVE_MEMO[key] = found
    return found


def is_auth_failure(output: str) -> bool:
    """Whether a failed step's output shows an authentication or authorisation failure."""
    return bool(output) and _search(AUTH_FAILURE_PATTERN, output)


def secrets_in(lines_by_file: Mapping[str, Iterable[str]]) -> tuple[str, ...]:
    """`path: kind` for each secret detect-secrets finds in the given lines (deduplicated)."""
    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import transient_settings

    # Only lines with something an enabled detector looks for reach the scanner; most steps
    # have none, and then detect-secrets' settings (about 1 ms to enter and leave) are spared.
    hinted = (
        (path, line)
        for path, lines in lines_by_file.items()
        for line in lines
        if SECRET_HINT.search(line)
    )
    candidates = list(itertools.islice(hinted, MAX_SECRET_LINES))
    if not candidates:
        return ()
    found: dict[str, None] = {}
    with transient_settings({"plugins_used": _secret_plugins()}):
        for path, line in candidates:
            for secret in scan_line(line[:1_000]):
                found[f"{path}: {secret.type}" if path else secret.type] = None
    return tuple(found)


def prepare_secret_scanner() -> None:
    """Import detect-secrets and list its detectors now (about 0.1 s), not inside a timed rule."""
    from detect_secrets.core.scan import scan_line  # noqa: F401
    from detect_secrets.settings import transient_settings  # noqa: F401

    _secret_plugins()


@lru_cache(maxsize=1)
def _secret_plugins() -> list[dict[str, str]]:
    """detect-secrets' detectors of known credential formats and keywords.

    The two high-entropy detectors are left out: on code and logs they flag hashes, ids and
    base64 test data far more often than credentials. The public-IP detector is left out too.
    """
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    noisy = {"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector"}
    return [
        {"name": plugin.__name__}
        for plugin in get_mapping_from_secret_type_to_class().values()
        if plugin.__name__ not in noisy
    ]


def removed_tests(step: StepText) -> int:
    """Test functions or test files the step removed (a renamed test is not counted)."""
    deleted_files = sum(1 for path in step.deleted_files if TEST_FILE.search(path))
    removed_names = _test_names(step.removed, skip=set(step.deleted_files))
    added_names = _test_names(step.added)
    return deleted_files + len(removed_names - added_names)


def _test_names(
    lines_by_file: Mapping[str, Iterable[str]], skip: set[str] | None = None
) -> set[str]:
    names: set[str] = set()
    for path, lines in lines_by_file.items():
        if skip and path in skip:
            continue
        for line in lines:
            match = TEST_FUNCTION.search(line)
            if match:
                name = next((g for g in match.groups()[1:] if g), line.strip())
                names.add(f"{path}::{name}")
    return names


def newly_skipped_tests(step: StepText) -> int:
    """Skip or xfail markers the step added beyond those it removed."""
    added = sum(1 for lines in step.added.values() for line in lines if SKIP_MARKER.search(line))
    removed = sum(
        1 for lines in step.removed.values() for line in lines if SKIP_MARKER.search(line)
    )
    return max(0, added - removed)


def change_budget(expected_change: str | None, line_budget: int | None) -> int:
    """The lines a task may change: its `line_budget`, else its `expected_change`; 0: no limit."""
    if line_budget:
        return line_budget
    return CHANGE_BUDGETS.get(expected_change or "", 0)


def step_signals(
    step: StepText, *, extra_destructive: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The review signals of one step, as rule-context values."""
    added_text = "\n".join(line for lines in step.added.values() for line in lines)
    return {
        "tests_removed": removed_tests(step),
        "tests_skipped_new": newly_skipped_tests(step),
        "secrets_added": secrets_in(step.added),
        "destructive_operations": destructive_operations(
            (step.command, step.prompt, added_text, step.output), extra_destructive
        ),
        "auth_failure": is_auth_failure(step.output),
    }


def before_signals(
    command: str, prompt: str, title: str, extra: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The signals known before a step runs: what its command, prompt and title announce."""
    return {"destructive_operations": destructive_operations((command, prompt, title), extra)}


def parse_unified_diff(diff: str) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """Added lines per new path and removed lines per old path of a `git diff` text."""
    added: dict[str, list[str]] = {}
    removed: dict[str, list[str]] = {}
    source = target = ""
    for line in diff.splitlines():
        if line.startswith("--- "):
            source = _diff_path(line[4:], "a/")
        elif line.startswith("+++ "):
            target = _diff_path(line[4:], "b/")
        elif line.startswith("+"):
            added.setdefault(target, []).append(line[1:])
        elif line.startswith("-"):
            removed.setdefault(source, []).append(line[1:])
    return (
        {p: tuple(v) for p, v in added.items()},
        {p: tuple(v) for p, v in removed.items()},
    )


def _diff_path(name: str, prefix: str) -> str:
    name = name.split("\t", 1)[0]
    if name == "/dev/null":
        return ""
    return name[len(prefix) :] if name.startswith(prefix) else name


def step_diff(workdir: Path, before_tree: str, after_tree: str) -> StepText:
    """The added and removed lines of a step, from the two git trees its snapshots recorded.

    Read with git's object database only (no work tree, no index), no external diff or textconv
    program, capped at MAX_DIFF_BYTES.
    """
    try:
        completed = run_git(
            workdir, "diff", "--no-color", "--no-renames", "-U0", before_tree, after_tree,
            timeout=GIT_TIMEOUT_SECONDS, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as error:
        logger.warning("could not read the step's diff in %s: %s", workdir, error)
        return StepText()
    text = completed.stdout[:MAX_DIFF_BYTES]
    added, removed = parse_unified_diff(text)
    return StepText(added=added, removed=removed, deleted_files=deleted_files(text))


def deleted_files(diff: str) -> tuple[str, ...]:
    """Paths a `git diff` text deletes (`+++ /dev/null` after their `---` line)."""
    deleted, source = [], ""
    for line in diff.splitlines():
        if line.startswith("--- "):
            source = _diff_path(line[4:], "a/")
        elif line.startswith("+++ ") and line[4:].split("\t", 1)[0] == "/dev/null" and source:
            deleted.append(source)
    return tuple(deleted)
