"""One owner per experiment, and what a sweep trusts: the experiment lock, the files handed to
Ray, the umask and Ray's token file.

- `ExperimentLock`: a run holds an exclusive lock on `<experiment>/.sweep.lock` (`flock`; the
  kernel releases it when the process dies, even by SIGKILL, so a lock left by a dead run is
  never in the way). The file names the host, the pid and the start time of the run that holds
  it, so a second run on the same experiment fails with one line saying who has it. On a
  filesystem without `flock` the file itself is the lock, and a lock whose process is gone
  (same host, dead pid) is taken over.
- `untrusted(path)`: why a file or folder must not be handed to code that unpickles it (Ray's
  `Tuner.restore`-style resume does): owned by another user, writable by its group or by
  others, or a symbolic link. As ssh's StrictModes does for `~/.ssh`.
- `tighten_umask()`: the sweep never loosens the caller's umask; it only removes group and
  world write permission.
- `keep_token_private(address)`: Ray writes `~/.ray/auth_token` with the process umask; for a
  local Ray the sweep writes it first, readable by its owner only, and a token file readable by
  others is made private (with a note).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import socket
import stat
import time
from pathlib import Path
from typing import Any

from sweep.config import ConfigError

LOCK_FILE = ".sweep.lock"
NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class ExperimentLock:
    """Exclusive ownership of an experiment folder for the life of this process."""

    def __init__(self, exp_dir: Path) -> None:
        self.path = exp_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> ExperimentLock:
        """Take the lock (the folder must exist); ConfigError when another run holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except PermissionError:
            raise ConfigError(
                f"cannot write in '{self.path.parent}' (permission denied); run the sweep as "
                "the user who owns it, or pass --storage (or --name) for a folder of your own"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(in_use(self.path)) from None
        except OSError as err:
            os.close(fd)
            if err.errno not in NO_FLOCK:
                raise
            fd = self._acquire_without_flock()
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder()).encode() + b"\n")
        self._fd = fd
        return self

    def _acquire_without_flock(self) -> int:
        """The file's content is the lock: taken over only from a dead process of this host."""
        owner = read_holder(self.path)
        if owner and owner.get("pid") != os.getpid() and not _gone(owner):
            raise ConfigError(in_use(self.path))
        return os.open(self.path, os.O_RDWR | os.O_CLOEXEC)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None


def holder() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def read_holder(path: Path) -> dict[str, Any] | None:
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _gone(owner: dict[str, Any]) -> bool:
    if owner.get("host") != socket.gethostname():
        return False  # another machine's process: we cannot tell, so it holds the lock
    try:
        os.kill(int(owner.get("pid", 0)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


def in_use(lock_path: Path) -> str:
    owner = read_holder(lock_path) or {}
    who = (
        f"pid {owner.get('pid')} on {owner.get('host')} (since {owner.get('started')})"
        if owner
        else "another run"
    )
    return (
        f"the sweep in '{lock_path.parent}' is running ({who}); wait for it to end or stop it "
        "(Ctrl-C, or kill that pid), then run this command again, or pass --name for a "
        "separate sweep"
    )


def check_free(exp_dir: Path) -> None:
    """Fail early (before Ray starts) when a live run holds the experiment; writes nothing."""
    path = exp_dir / LOCK_FILE
    if not path.is_file():
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # acquire() will say what is wrong
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError(in_use(path)) from None
    except OSError:
        pass
    finally:
        os.close(fd)


def untrusted(path: Path) -> str | None:
    """Why `path` may hold code another user planted, or None when only its owner (this user)
    can have written it."""
    try:
        st = os.lstat(path)
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if st.st_uid != os.geteuid():
        return f"belongs to another user (uid {st.st_uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "is writable by other users (group or world)"
    return None


def tighten_umask() -> int:
    """Keep the caller's umask, plus no group or world write permission; returns the new one."""
    current = os.umask(0o022)
    os.umask(current | 0o022)
    return current | 0o022


def token_path() -> Path:
    return Path.home() / ".ray" / "auth_token"


def keep_token_private(address: str | None) -> str | None:
    """Make Ray's default token file readable by its owner only; for a local Ray with token
    authentication and no token yet, write one (Ray's own format: 64 hex digits) so that Ray
    never creates it with the umask's permissions. Returns a note to print, or None."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return None  # the user points Ray at a token of their own
    path = token_path()
    if path.is_file():
        st = path.stat()
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            path.chmod(0o600)
            return f"[sweep] made {path} readable by you only (it was readable by others)"
        return None
    local = address is None and not os.environ.get("RAY_ADDRESS")
    if not local or os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        return None
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return None
