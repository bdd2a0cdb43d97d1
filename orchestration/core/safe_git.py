"""The one way the project runs git: with a fixed configuration that runs no repository program.

An agent writes the work tree, and `.git/config`, `.git/hooks` and `.gitattributes` with it. Git
runs programs named there (an fsmonitor, hooks, diff and filter drivers) from ordinary commands
such as `git add` or `git diff`, so any git call the engine, a validator or the review page makes
goes through run_git, which overrides each of them at command-line scope (above every file).
docs/security.md lists the settings and why each is there.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

GIT_TIMEOUT_SECONDS = 10.0

# Set above every config file for every call, with the reason for each.
FIXED_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.fsmonitor", "false"),  # a hook program run by add, diff, status, checkout-index
    ("core.hooksPath", "/dev/null"),  # no hook runs (post-index-change, reference-transaction, ..)
    ("diff.external", ""),  # an external diff program (also --no-ext-diff below)
    ("core.pager", "cat"),  # a pager program (also --no-pager)
    ("commit.gpgSign", "false"),  # commit-tree would run gpg.program
    ("tag.gpgSign", "false"),
    ("protocol.allow", "never"),  # no transport: a lazy fetch of a partial clone, core.sshCommand
    ("maintenance.auto", "false"),  # no background gc or maintenance after a commit
    ("gc.auto", "0"),
)
# Added for the calls that move commits between repositories (a worker's clone, fetch and
# push): the file and ssh transports only, with ssh as the program (GIT_SSH_COMMAND, set by
# the user, still wins) rather than one a repository's config names.
TRANSPORT_CONFIG: tuple[tuple[str, str], ...] = (
    ("protocol.file.allow", "always"),
    ("protocol.ssh.allow", "always"),
    ("core.sshCommand", "ssh"),
)
# Drivers named by .gitattributes are defined in config under a name the agent chooses, so they
# are looked up in each call's config and emptied: an empty command means "no driver".
DRIVER_SETTINGS: dict[str, str] = {
    "clean": "",
    "smudge": "",
    "process": "",
    "required": "false",  # with the commands emptied, a required filter would fail the call
    "textconv": "",
    "command": "",
}
_DRIVER_KEYS = r"^(filter|diff|merge)\..+\.(clean|smudge|process|required|textconv|command|driver)$"
# Plumbing that reads or writes objects and refs only, never a work tree file through a driver:
# the look-up of driver settings (one more git process) is skipped for these. Not write-tree:
# it re-reads a racily clean index entry's file through its clean filter.
_NO_DRIVER_COMMANDS = frozenset(
    {"rev-parse", "update-ref", "for-each-ref", "commit-tree", "cat-file", "ls-tree"}
)
# Diffing commands that would otherwise run a textconv or an external diff program.
_DIFF_COMMANDS = frozenset({"diff", "log", "show"})
# Variables that would point git at another repository, index or work tree than the caller's
# (git sets some of them while running hooks, e.g. GIT_INDEX_FILE in pre-commit).
REPOSITORY_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_EXTERNAL_DIFF",
    "GIT_PAGER",
)


def run_git(
    cwd: Path,
    *args: str,
    extra_env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = GIT_TIMEOUT_SECONDS,
    errors: str = "surrogateescape",
    check: bool = False,
    transport: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run `git ARGS` in `cwd` under the fixed configuration; output is captured as text.

    `extra_env` adds variables such as GIT_INDEX_FILE; `transport` allows the file and ssh
    transports (TRANSPORT_CONFIG) for a clone, fetch or push. Raises what subprocess.run raises:
    OSError when git cannot start, TimeoutExpired, CalledProcessError with `check`.
    """
    base = _environment(extra_env)
    index = _subcommand_index(args)
    config = list(FIXED_CONFIG) + (list(TRANSPORT_CONFIG) if transport else [])
    if index is None or args[index] not in _NO_DRIVER_COMMANDS:
        config += _driver_overrides(cwd, base, timeout)
    env = {**base, **_as_environment(config)}
    return subprocess.run(
        ["git", "--no-pager", *_with_diff_guards(args)],
        cwd=cwd,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors=errors,
        timeout=timeout,
        check=check,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def _environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in REPOSITORY_VARIABLES}
    env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password on a terminal
    return {**env, **(extra or {})}


def _as_environment(config: Sequence[tuple[str, str]]) -> dict[str, str]:
    # GIT_CONFIG_COUNT/KEY/VALUE rather than `-c key=value`: a driver name the agent chose may
    # contain `=`, which `-c` would split at; here key and value stay apart. The caller's own
    # entries (if any) come first, so ours win.
    start = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
    env = {"GIT_CONFIG_COUNT": str(start + len(config))}
    for offset, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{start + offset}"] = key
        env[f"GIT_CONFIG_VALUE_{start + offset}"] = value
    return env


def _driver_overrides(cwd: Path, env: dict[str, str], timeout: float) -> list[tuple[str, str]]:
    """An emptying override for every filter, diff and merge driver command the config names."""
    try:
        listed = subprocess.run(
            ["git", "config", "-z", "--name-only", "--get-regexp", _DRIVER_KEYS],
            cwd=cwd,
            env={**env, **_as_environment(FIXED_CONFIG)},
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="surrogateescape",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return []  # the real call reports the failure
    overrides = []
    for key in filter(None, listed.stdout.split("\0")):
        setting = key.rsplit(".", 1)[-1].lower()
        overrides.append((key, DRIVER_SETTINGS.get(setting, "")))
    return overrides


def _with_diff_guards(args: Sequence[str]) -> list[str]:
    """`args` with --no-ext-diff --no-textconv after a diffing subcommand."""
    index = _subcommand_index(args)
    if index is None or args[index] not in _DIFF_COMMANDS:
        return list(args)
    return [*args[: index + 1], "--no-ext-diff", "--no-textconv", *args[index + 1 :]]


def _subcommand_index(args: Sequence[str]) -> int | None:
    index = 0
    while index < len(args):
        if args[index] in ("-c", "-C"):
            index += 2
        elif args[index].startswith("-"):
            index += 1
        else:
            return index
    return None
