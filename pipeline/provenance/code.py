"""The code a run ran: its checkout's commit and, where the working tree differs from it, that
difference as a patch which `git apply` on the commit turns into the code that ran.

Code here is every file git tracks or would track, less what is not code: params.yaml (the run's
params, logged as such: a sweep's edited value is no code change), dvc.lock and the outputs that
the README commits (metrics/, plots/), and the prose (docs/, README.md). Untracked files count
under pipeline/ only, the package every stage runs: a new module a stage imports, not a stray
image in the checkout's root.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

NOT_CODE = ("params.yaml", "dvc.lock", "metrics", "plots", "docs", "README.md")
NEW_CODE = ("pipeline",)
DIFF_CAP_BYTES = 1_000_000  # a larger patch is not logged whole: its size and digest say which it was
GIT_SECONDS = 60

# The checkout that holds the running `pipeline` package: its code is what runs, also in DVC's
# temporary experiment workspaces (whose DVC_ROOT names the main checkout instead).
RUNNING_CHECKOUT = Path(__file__).resolve().parents[2]


class _GitFailed(Exception):
    pass


@dataclass(frozen=True)
class CodeState:
    commit: str  # HEAD, or "unknown"
    dirty: bool | None  # None where it cannot be told
    diff: str  # the uncommitted changes as a patch, "" when clean or unknown
    unknown_because: str = ""

    @property
    def digest(self) -> str:
        """Tells two runs' uncommitted edits apart (sha256 of the patch); "" when clean."""
        return hashlib.sha256(self.diff.encode()).hexdigest() if self.diff else ""

    @property
    def identity(self) -> str:
        """The code in one word: commit, plus the edit's digest where there is one."""
        return f"{self.commit}+{self.digest[:12]}" if self.digest else self.commit

    @property
    def logged_whole(self) -> bool:
        return bool(self.diff) and len(self.diff.encode()) <= DIFF_CAP_BYTES


def _git(root: Path, *args: str, ok=(0,)) -> str:
    try:
        # --no-optional-locks: stages run side by side, and a diff would otherwise take the index lock
        result = subprocess.run(["git", "--no-optional-locks", *args], cwd=root, capture_output=True, text=True,
                                timeout=GIT_SECONDS)
    except FileNotFoundError:
        raise _GitFailed("git is not installed") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _GitFailed(f"git failed ({type(exc).__name__})") from None
    if result.returncode not in ok:
        raise _GitFailed((result.stderr.strip().splitlines() or [f"git exited {result.returncode}"])[-1])
    return result.stdout


def uncommitted_diff(root: Path) -> str:
    """Tracked files' changes against HEAD and the new files under NEW_CODE, as one patch."""
    excluded = [f":(exclude){path}" for path in NOT_CODE]
    patch = _git(root, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", "--", ".", *excluded)
    new = _git(root, "ls-files", "--others", "--exclude-standard", "-z", "--", *NEW_CODE).split("\0")
    for path in filter(None, new):
        # exit status 1: the files differ, as a new file always does from /dev/null
        patch += _git(root, "diff", "--no-index", "--binary", "--no-color", "--", "/dev/null", path, ok=(0, 1))
    return patch


def code_state(root: Path = RUNNING_CHECKOUT) -> CodeState:
    """The commit and uncommitted edits of the checkout at `root`; never raises: what cannot be
    read is 'unknown', with the reason."""
    try:
        inside = _git(root, "rev-parse", "--is-inside-work-tree", ok=(0, 128)).strip()
        if inside != "true":
            return CodeState("unknown", None, "", "not a git checkout")
        try:
            commit = _git(root, "rev-parse", "--verify", "HEAD").strip()
        except _GitFailed:
            return CodeState("unknown", None, "", "a git checkout without a commit yet")
        diff = uncommitted_diff(root)
    except _GitFailed as exc:
        return CodeState("unknown", None, "", str(exc))
    return CodeState(commit, bool(diff), diff)
