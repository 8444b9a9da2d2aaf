"""Where a sweep's results live: a local disk, a network filesystem, an object store.

Ray stopped syncing trial folders to the head node in 2.7, so with trials on more than one node
the results folder must be shared: `classify_storage` tells a path on a network filesystem
(nfs, lustre, gpfs, ... by `/proc/mounts`, the deepest mount holding the path) or an
object-store mount from a node-local one (`sweep.cluster` decides what that means for the
cluster at hand). Object-store URIs (`s3://`, `gs://`, ...) are recognised as shared, but the
runner keeps its experiment folder as a local path, so `check_storage_arg` refuses them with the
fix (mount the bucket, or use a shared filesystem).

The Optuna journal (`journal_path`) stays in the experiment folder unless `--journal` moves it:
Optuna's `JournalFileBackend` needs a POSIX file with appends and locks, which object-store
mounts (s3fs, gcsfuse, mountpoint-s3) lack. See docs/cluster.md.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sweep.config import ConfigError

if TYPE_CHECKING:
    from sweep.config import SweepConfig

# fstype as /proc/mounts spells it; every node mounting the same export sees the same files
NETWORK_FS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "lustre",
        "gpfs",
        "beegfs",
        "glusterfs",
        "fuse.glusterfs",
        "ceph",
        "fuse.ceph-fuse",
        "panfs",
        "wekafs",
        "orangefs",
        "pvfs2",
        "afs",
        "ocfs2",
        "gfs2",
        "quobyte",
        "fuse.quobyte",
        "fuse.juicefs",
        "fuse.sshfs",
        "fuse.lizardfs",
        "fuse.mfs",
        "fuse.moosefs",
        "davfs",
        "fuse.davfs",
    }
)
# object stores mounted as a filesystem: shared, but without reliable appends or locks
OBJECT_STORE_MOUNTS = frozenset(
    {
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.mountpoint-s3",
        "fuse.goofys",
        "fuse.rclone",
        "fuse.blobfuse",
        "fuse.blobfuse2",
    }
)
URI_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


@dataclass(frozen=True)
class Options:
    """Cluster-related command-line choices (`--shared-storage`, `--journal`)."""

    shared_storage: bool = False  # the user asserts every node sees --storage at the same path
    journal: str | None = None  # Optuna journal file; None: <storage>/<name>/optuna-journal.log


@dataclass(frozen=True)
class StorageInfo:
    kind: str  # "uri" | "network" | "object-mount" | "local"
    fstype: str  # filesystem type from /proc/mounts, or the URI scheme
    mount: str  # mount point holding the path ("" for a URI)

    @property
    def shared(self) -> bool:
        return self.kind != "local"


def writable_ancestor(path: Path) -> Path | None:
    """None when `path` can be created and written; else the existing folder that blocks it."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    return None if probe.is_dir() and os.access(probe, os.W_OK | os.X_OK) else probe


def probe_writable(folder: Path) -> None:
    """Create `folder` (with its missing parents), write a file in it, then remove all that
    again: raises the OSError of the first step that fails. Permission bits cannot tell
    (root passes `os.access` everywhere, /proc refuses anyway); only trying can."""
    missing = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    created: list[Path] = []
    try:
        for d in reversed(missing):
            d.mkdir()
            created.append(d)
        path = folder / f".sweep-write-probe-{os.getpid()}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"probe\n")
        finally:
            os.close(fd)
            path.unlink(missing_ok=True)
    finally:
        for d in reversed(created):  # nothing stays behind, whatever comes next
            try:
                d.rmdir()
            except OSError:
                pass  # something else wrote there meanwhile: keep it


def check_writable(storage: Path) -> None:
    """The storage folder must be creatable and writable: tried (and undone) before Ray
    starts, so that any OSError becomes one line instead of a traceback after Ray's start."""
    try:
        probe_writable(storage)
    except OSError as err:
        where = f" at '{err.filename}'" if err.filename else ""
        raise ConfigError(
            f"storage path '{storage}' is not writable ({err.strerror}{where}); pass "
            "--storage (or STORAGE=) with a folder you can write"
        ) from None


def is_uri(storage: str | Path) -> bool:
    return isinstance(storage, str) and URI_RE.match(storage) is not None


def check_storage_arg(storage: str, journal: str | None = None) -> None:
    """CLI-level checks of --storage / --journal before they become paths."""
    if is_uri(storage):
        scheme = URI_RE.match(storage).group(1)  # type: ignore[union-attr]
        raise ConfigError(
            f"--storage {storage}: object-store URIs ({scheme}://) are not supported yet (the "
            "experiment folder and Optuna journal need a filesystem); mount the bucket on every "
            "node (mountpoint-s3, gcsfuse) or use a shared filesystem path, see docs/cluster.md"
        )
    if journal is not None and is_uri(journal):
        raise ConfigError(
            f"--journal {journal}: Optuna's journal must be a file path on a "
            "POSIX filesystem, not a URI; pass --journal /shared/path/journal.log"
        )


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def read_mounts(text: str | None = None) -> list[tuple[str, str, str]]:
    """(device, mount point, fstype) per line of /proc/mounts (or of `text`)."""
    if text is None:
        try:
            text = Path("/proc/mounts").read_text()
        except OSError:  # not Linux: we cannot tell, treat paths as local
            return []
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            mounts.append((_unescape(parts[0]), _unescape(parts[1]), parts[2]))
    return mounts


def _fs_kind(device: str, fstype: str) -> tuple[str, str]:
    if fstype == "fuse" and device in (
        "mountpoint-s3",
        "s3fs",
        "gcsfuse",
        "goofys",
        "blobfuse2",
        "rclone",
    ):
        fstype = f"fuse.{device}"  # some FUSE mounts only name themselves in the device field
    if fstype in OBJECT_STORE_MOUNTS:
        return "object-mount", fstype
    if fstype in NETWORK_FS:
        return "network", fstype
    return "local", fstype


def classify_storage(storage: str | Path, mounts_text: str | None = None) -> StorageInfo:
    """Where the results folder lives: an object-store URI, a network/object mount, or local."""
    if is_uri(storage):
        scheme = URI_RE.match(str(storage)).group(1).lower()  # type: ignore[union-attr]
        return StorageInfo("uri", scheme, "")
    path = Path(os.path.realpath(Path(storage).expanduser()))
    best: tuple[str, str, str] | None = None
    for device, mount, fstype in read_mounts(mounts_text):
        inside = path == Path(mount) or Path(mount) in path.parents
        if inside and (best is None or len(mount) >= len(best[1])):
            best = (device, mount, fstype)  # the last, deepest mount wins (over-mounts)
    if best is None:
        return StorageInfo("local", "unknown", "")
    kind, fstype = _fs_kind(best[0], best[2])
    return StorageInfo(kind, fstype, best[1])


def journal_path(options: Options, default: Path) -> str:
    """The Optuna journal file: --journal if given, else inside the experiment folder."""
    if options.journal:
        return str(Path(options.journal).expanduser().resolve())
    return str(default)


def require_journal_ok(cfg: SweepConfig, where: StorageInfo, options: Options) -> None:
    if (
        where.kind == "object-mount"
        and cfg.optuna.trials_per_batch_size > 0
        and not options.journal
    ):
        raise ConfigError(
            f"the storage is an object-store mount ({where.fstype} at {where.mount}), where "
            "Optuna's journal file cannot append or lock; pass --journal PATH on an ordinary "
            "filesystem (shared, if the driver may move)"
        )
    if options.journal:
        probe = writable_ancestor(Path(options.journal).expanduser().resolve().parent)
        if probe is not None:
            raise ConfigError(
                f"--journal {options.journal}: cannot write in '{probe}'; pass a "
                "path in a folder you can write"
            )
