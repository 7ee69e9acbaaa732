"""Versioning with DVC (and git when present): project set-up, tracking a version (file or folder), the remote."""

from __future__ import annotations

import contextlib
import io
import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from curation.errors import CurationError
from curation.locks import locked

log = logging.getLogger(__name__)


def _git(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(home), *args], capture_output=True, text=True)


def git_root(home: Path) -> Path | None:
    result = _git(home, "rev-parse", "--show-toplevel")
    return Path(result.stdout.strip()).resolve() if result.returncode == 0 else None


def git_revision(home: Path) -> str | None:
    """HEAD's commit when ``home`` is in a git repository with at least one commit."""
    result = _git(home, "rev-parse", "HEAD")
    return result.stdout.strip() if result.returncode == 0 else None


@contextlib.contextmanager
def _quiet_dvc() -> Iterator[None]:
    """DVC talks to stdout (hints, 'Initialized...'): keep that out of our output and --json."""
    buffer = io.StringIO()
    dvc_logger = logging.getLogger("dvc")
    level = dvc_logger.level
    dvc_logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield
    finally:
        dvc_logger.setLevel(level)
    if buffer.getvalue().strip():
        log.debug("dvc: %s", buffer.getvalue().strip())


def ensure_repo(home: Path, git: bool = True) -> list[str]:
    """git init (if not inside a repository) and dvc init (if missing). Returns what was done."""
    done = []
    home.mkdir(parents=True, exist_ok=True)
    root = git_root(home)
    if root is None and git:
        result = _git(home, "init", "-q")
        if result.returncode != 0:
            raise CurationError(f"git init failed in {home}: {result.stderr.strip()}", "install git or init by hand")
        root = home.resolve()
        done.append("git init")
    if not (home / ".dvc").is_dir():
        from dvc.repo import Repo

        with _quiet_dvc():
            repo = Repo.init(str(home), no_scm=root is None, subdir=root is not None and root != home.resolve())
            with repo.config.edit() as conf:
                # versions are immutable: link them into the cache instead of copying their bytes
                conf["cache"]["type"] = "reflink,hardlink,copy"
                if root is not None:
                    conf["core"]["autostage"] = True  # stage .dvc files in git as they are written
            repo.close()
        done.append("dvc init")
    return done


PATIENCE_S = 120.0  # how long our DVC commands on one repository wait for each other


def _dvc_queue(home: Path, what: str, patience_s: float = PATIENCE_S):
    """Our DVC commands on one repository queue here (DVC itself fails fast on its own lock)."""
    return locked(home / ".dvc" / "tmp" / "curation.lock", f"`dvc {what}` in {home}", patience_s)


def dvc_track(home: Path, path: Path, patience_s: float = PATIENCE_S) -> str:
    """``dvc add`` one file or folder; returns the md5 DVC recorded for it (from the .dvc file).

    Concurrent callers queue on a file lock; a DVC lock held by some other program is retried with
    backoff. Both waits together last at most ``patience_s`` seconds before a one-line error.
    """
    from dvc.lock import LockError
    from dvc.repo import Repo

    deadline, delay = time.monotonic() + patience_s, 0.05
    with _dvc_queue(home, "add", patience_s):
        while True:
            try:
                with _quiet_dvc(), Repo(str(home)) as repo:
                    repo.add(str(path))
                return dvc_hash(path)
            except LockError:
                if time.monotonic() > deadline:
                    raise CurationError(
                        f"the DVC repository in {home} stayed locked for {patience_s:.0f} s",
                        "wait for the other DVC command to finish, or remove .dvc/tmp/lock "
                        "if no DVC process is running",
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)


REMOTE = "storage"  # the name `curation init --remote` gives DVC's default remote


def set_remote(home: Path, url: str) -> str:
    """Make ``url`` (a folder, or an object-store URL whose DVC plugin is installed) DVC's default remote.

    A folder path is made absolute (DVC would read a relative one against .dvc/). Returns the URL set.
    """
    from dvc.exceptions import DvcException
    from dvc.fs import get_cloud_fs
    from dvc.repo import Repo

    if "://" not in url:
        url = str(Path(url).expanduser().resolve())
    try:
        get_cloud_fs({}, url=url)  # a known scheme whose plugin is installed
    except (ImportError, DvcException) as exc:
        raise CurationError(
            f"DVC cannot use remote {url!r}: {str(exc).splitlines()[0]}",
            "install the plugin it names (e.g. pip install dvc-s3) or give a folder",
        ) from None
    with _dvc_queue(home, "remote add"), _quiet_dvc(), Repo(str(home)) as repo, repo.config.edit() as conf:
        conf["remote"][REMOTE] = {"url": url}
        conf["core"]["remote"] = REMOTE
    return url


def default_remote(home: Path) -> str | None:
    """The URL of DVC's default remote in ``home``, or None when there is none (or no DVC repository)."""
    if not (home / ".dvc").is_dir():
        return None
    from dvc.repo import Repo

    with _quiet_dvc(), Repo(str(home)) as repo:
        name = repo.config["core"].get("remote")
        return repo.config["remote"].get(name, {}).get("url") if name else None


def _transfer(home: Path, path: Path, verb: str) -> None:
    """``dvc push`` or ``dvc pull`` of one tracked file or folder, against the default remote."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    with _dvc_queue(home, verb):
        try:
            with _quiet_dvc(), Repo(str(home)) as repo:
                getattr(repo, verb)(targets=[str(path)])
        except (DvcException, OSError) as exc:  # OSError: a local remote that is not a writable folder
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise CurationError(
                f"dvc {verb} of {path.name} to/from remote {default_remote(home)!r} failed: {first}",
                f"check the remote (`dvc remote list`), then run `dvc {verb} {path}.dvc`",
            ) from None


def dvc_push(home: Path, path: Path) -> None:
    """Copy one tracked output's objects to the default remote (a no-op when it is there already)."""
    _transfer(home, path, "push")


def dvc_pull(home: Path, path: Path) -> None:
    """Fetch one tracked output from the default remote into the cache and the workspace."""
    _transfer(home, path, "pull")


def dvc_hash(path: Path) -> str | None:
    """The md5 recorded in ``<path>.dvc``, or None when it is not tracked."""
    meta = Path(f"{path}.dvc")
    if not meta.is_file():
        return None
    outs = (yaml.safe_load(meta.read_text()) or {}).get("outs") or [{}]
    return outs[0].get("md5")


def dvc_untrack(path: Path, gitignore_before: str | None) -> None:
    """Undo ``dvc_track`` for an output the catalog never claimed: .dvc file and the .gitignore entry."""
    Path(f"{path}.dvc").unlink(missing_ok=True)
    gitignore = path.parent / ".gitignore"
    if gitignore_before is None:
        gitignore.unlink(missing_ok=True)
    else:
        gitignore.write_text(gitignore_before)
