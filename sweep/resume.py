"""Resuming after any kill: what the experiment folder says has been done, one record per trial.

The trial folders are the source of truth. Each holds Ray's `params.json` (the trial config,
with its `phase`) and `result.json` (one JSON line per epoch); a trial is finished when its last
row reached the config's `epochs` or diverged. Ray writes both in a staging folder on the
driver and copies them, with every other trial's, into the experiment folder each time it
snapshots its state (at most every ~10 s), rewriting each file in place: a kill or a full disk
during that copy can truncate a finished trial's files. So the sweep copies a trial's two files
itself, atomically, at each of its epoch checkpoints (`copy_trial_files`; Ray restores a
retried trial's rows from this copy) and the moment it finishes, before Optuna is told, when it
also writes `trial.json` there (its config and rows, once; Ray never touches it:
`flush_trial`). A trial the journal knows finished has a `trial.json`, and a resume restores
Ray's two files from it when they were cut short. The trial folders and the Optuna journal
(`sweep.studies`) are all the searcher's state is rebuilt from (`sweep.search`), whatever phase
the sweep was in and whenever it was killed.

Ray's newest `experiment_state-*.json` is used for one thing only: which unfinished trials Ray
can continue from their last epoch checkpoint (or start, if they never started). It is read here
as plain JSON, never unpickled. Ray itself unpickles it on resume, so it is handed to Ray only
when it and the experiment folder belong to the user who resumes and no other user can write
them (`sweep.owner.untrusted`). Ray's pickled snapshots of the searcher and of callbacks
(`searcher-state-*.pkl`, `search_gen_state-*.json`, `callback-states-*.pkl`, `tuner.pkl`) are
deleted before Ray starts: never loaded, and no longer written.

`prepare(exp_dir)` classifies every trial as
- `done`: its folder shows it finished (if Ray's state still has it as running, because Ray
  snapshots its state at most every ~10 s, it is marked finished there, so Ray does not run it
  again);
- `continue`: unfinished, and Ray's state can continue it (a failed trial is retried);
- `rerun`: unfinished, and Ray has no usable record of it (it started after Ray's last snapshot,
  or Ray's state is missing, damaged or untrusted): its folder is moved to
  `<experiment>.unfinished/` beside the experiment and the searcher runs its configuration
  again from the start. A folder that holds only checkpoints (a trial that started after Ray's
  last snapshot; its worker writes checkpoints straight into the experiment) is moved there too.
When Ray's state is unusable it is renamed `*.ignored` and Ray starts afresh in the same folder.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.owner import untrusted

DONE, CONTINUE, RERUN = "done", "continue", "rerun"
RECORD = "trial.json"  # a finished trial's {"config": ..., "rows": [...]}, written once
RAY_STATE = "experiment_state-*.json"
# Ray's pickled snapshots that its resume would load; the searcher rebuilds from JSON instead
RAY_PICKLES = (
    "searcher-state-*.pkl",
    "search_gen_state-*.json",
    "callback-states-*.pkl",
    "basic-variant-state-*.json",
    "tuner.pkl",
)
TERMINATED = "TERMINATED"


def config_key(config: dict[str, Any]) -> tuple:
    """What makes two trials the same configuration: phase, batch size, lr, warmup, seed."""
    return (
        config.get("phase"),
        config.get("batch_size"),
        config.get("lr"),
        config.get("warmup_epochs"),
        config.get("seed"),
    )


@dataclass(frozen=True)
class TrialFolder:
    """One trial folder: its config and the epoch rows that reached the disk."""

    name: str
    config: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def trial_id(self) -> str:
        if self.rows and self.rows[-1].get("trial_id"):
            return str(self.rows[-1]["trial_id"])
        parts = self.name.split("_")  # sweep.space.trial_dirname: <phase>_<id>_B..._lr..._...
        return parts[1] if len(parts) > 2 else self.name

    @property
    def finished(self) -> bool:
        if not self.rows:
            return False
        last = self.rows[-1]
        return bool(last.get("diverged")) or last.get("epoch", 0) >= self.config.get(
            "epochs", math.inf
        )


@dataclass(frozen=True)
class RayTrial:
    trial_id: str
    status: str
    folder: str  # relative to the experiment folder ("" until it started)
    config: dict[str, Any]


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the resumed sweep sees it."""

    trial_id: str
    status: str  # DONE | CONTINUE | RERUN
    config: dict[str, Any]
    folder: str = ""  # trial folder name ("" for a trial that never started)
    last: dict[str, Any] | None = None  # the last result row of a finished trial

    @property
    def phase(self) -> str:
        return str(self.config.get("phase", ""))


@dataclass
class History:
    """What `prepare` found: the records, and whether Ray continues from its own state."""

    records: list[TrialRecord] = field(default_factory=list)
    ray_resumes: bool = False  # Ray's state is used (else Ray starts afresh in the folder)
    notes: list[str] = field(default_factory=list)  # what the user should know, one line each

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r.status == status)


# ---------------------------------------------------------------------------- reading
def read_rows(path: Path) -> list[dict[str, Any]]:
    """result.json's rows up to the first line that is not whole JSON (a torn last write)."""
    rows: list[dict[str, Any]] = []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return rows
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        try:
            row = json.loads(line)
        except ValueError:
            break
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_config(path: Path) -> dict[str, Any] | None:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return config if isinstance(config, dict) else None


def read_record(folder: Path) -> TrialFolder | None:
    """A finished trial's own record (`trial.json`), when whole."""
    record = read_config(folder / RECORD)
    if not record or not isinstance(record.get("config"), dict) or not record.get("rows"):
        return None
    return TrialFolder(folder.name, record["config"], list(record["rows"]))


def read_folders(exp_dir: Path) -> list[TrialFolder]:
    """The trial folders directly under the experiment folder: those with a readable
    params.json, or with the record of a finished trial (which then restores Ray's files)."""
    found = []
    for folder in sorted(d for d in exp_dir.iterdir() if d.is_dir()):
        record = read_record(folder)
        config = read_config(folder / "params.json")
        rows = read_rows(folder / "result.json")
        if record is not None:
            if config != record.config or len(rows) < len(record.rows):  # cut short by Ray
                write_ray_files(folder, record.config, record.rows)
            found.append(record)
        elif config is not None:
            found.append(TrialFolder(folder.name, config, rows))
    return found


def newest_ray_state(exp_dir: Path) -> Path | None:
    """The experiment state Ray's resume would load: the last by name, as Ray picks it."""
    states = sorted(exp_dir.glob(RAY_STATE), key=lambda p: p.name)
    return states[-1] if states else None


def read_ray_state(path: Path) -> dict[str, RayTrial]:
    """Ray's trials (id, status, folder, config) from its experiment state, as plain JSON
    (its embedded pickles stay undecoded). ValueError when it is not Ray's whole state file."""
    state = json.loads(path.read_text())
    trials: dict[str, RayTrial] = {}
    for entry in state["trial_data"]:
        t = json.loads(entry[0])
        trials[str(t["trial_id"])] = RayTrial(
            str(t["trial_id"]), str(t["status"]), str(t.get("relative_logdir") or ""), t["config"]
        )
    if not isinstance(state.get("runner_data"), dict):
        raise ValueError("no runner_data")
    return trials


# ---------------------------------------------------------------------------- deciding
def reconcile(
    folders: list[TrialFolder], ray: dict[str, RayTrial] | None
) -> tuple[list[TrialRecord], list[str]]:
    """Every trial's record, and the trials Ray's state must mark finished (pure)."""
    ray = ray or {}
    by_folder = {t.folder: t for t in ray.values() if t.folder}
    records: list[TrialRecord] = []
    mark_finished: list[str] = []
    seen: set[str] = set()
    for f in folders:
        known = by_folder.get(f.name)
        tid = known.trial_id if known else f.trial_id
        seen.add(tid)
        unfinished_in_ray = known is not None and known.status != TERMINATED
        if f.finished:
            records.append(TrialRecord(tid, DONE, f.config, f.name, f.rows[-1]))
            if unfinished_in_ray:
                mark_finished.append(tid)
        elif unfinished_in_ray:
            records.append(TrialRecord(tid, CONTINUE, f.config, f.name))
        else:
            records.append(TrialRecord(tid, RERUN, f.config, f.name))
    for t in ray.values():
        if t.trial_id not in seen and t.status != TERMINATED:  # never started: Ray starts it
            records.append(TrialRecord(t.trial_id, CONTINUE, t.config, t.folder))
    return records, mark_finished


# ---------------------------------------------------------------------------- acting
def mark_finished_in_ray_state(path: Path, trial_ids: list[str]) -> None:
    """Set these trials' status to TERMINATED in Ray's state file (atomically, in place)."""
    if not trial_ids:
        return
    state = json.loads(path.read_text())
    wanted = set(trial_ids)
    for entry in state["trial_data"]:
        t = json.loads(entry[0])
        if str(t["trial_id"]) in wanted:
            t["status"] = TERMINATED
            entry[0] = json.dumps(t, indent=2)
    write_atomically(path, json.dumps(state))


def write_atomically(path: Path, text: str, durable: bool = True) -> None:
    """Write a whole file or leave the old one (a kill or a full disk never cuts it short);
    `durable`: on the disk before this returns (fsync)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from err
    finally:
        tmp.unlink(missing_ok=True)


def unfinished_dir(exp_dir: Path) -> Path:
    """Where trial folders that are run again from the start are kept (beside the experiment:
    the analysis reads every folder under the experiment)."""
    return exp_dir.with_name(f"{exp_dir.name}.unfinished")


def retire(exp_dir: Path, folder: str) -> Path | None:
    """Move an unfinished trial folder out of the experiment; None when there is none."""
    src = exp_dir / folder
    if not folder or not src.is_dir():
        return None
    target = unfinished_dir(exp_dir) / folder
    if target.exists():
        target = target.with_name(f"{folder}.{time.strftime('%Y%m%d-%H%M%S')}")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(target))
    return target


def copy_trial_files(
    staging: str | None, folder: str | None, durable: bool = False
) -> tuple[dict, list] | None:
    """A trial's config and rows from Ray's staging folder into its folder in the experiment,
    now rather than at Ray's next snapshot; (config, rows), or None when there is none yet."""
    if not staging or not folder:
        return None
    config = read_config(Path(staging, "params.json"))
    if config is None:
        return None
    rows = read_rows(Path(staging, "result.json"))
    path = Path(folder)
    if path.resolve() != Path(staging).resolve():
        path.mkdir(parents=True, exist_ok=True)
        write_ray_files(path, config, rows, durable)
    return config, rows


def flush_trial(staging: str | None, folder: str | None) -> None:
    """A finished trial: its files copied (`copy_trial_files`) and its record written."""
    got = copy_trial_files(staging, folder, durable=True)
    if got is not None:
        write_json(Path(folder, RECORD), {"config": got[0], "rows": got[1]})  # type: ignore[arg-type]


def write_ray_files(
    folder: Path, config: dict[str, Any], rows: list[dict[str, Any]], durable: bool = True
) -> None:
    write_json(folder / "params.json", config, indent=2, durable=durable)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    write_atomically(folder / "result.json", text, durable)


def write_json(path: Path, data: Any, indent: int | None = None, durable: bool = True) -> None:
    text = json.dumps(data, indent=indent, sort_keys=indent is not None)
    write_atomically(path, text, durable)


def orphans(exp_dir: Path, known: set[str]) -> list[str]:
    """Trial folders nobody can use: no readable config (it started after Ray's last snapshot,
    or Ray's copy of it was cut short) and no record in Ray's state either."""
    found = []
    for d in exp_dir.iterdir():
        if not d.is_dir() or d.name in known:
            continue
        ray_files = any((d / name).exists() for name in ("params.json", "result.json"))
        if ray_files or any(d.glob("checkpoint_*")):
            found.append(d.name)
    return sorted(found)


def delete_ray_pickles(exp_dir: Path) -> None:
    for pattern in RAY_PICKLES:
        for path in exp_dir.glob(pattern):
            path.unlink(missing_ok=True)


def ignore_ray_state(exp_dir: Path) -> None:
    """Rename every Ray experiment state so that no resume ever loads it."""
    for path in exp_dir.glob(RAY_STATE):
        path.rename(path.with_name(path.name + ".ignored"))


def ray_state_problem(exp_dir: Path) -> tuple[dict[str, RayTrial] | None, str]:
    """Ray's trials from its newest state, or (None, why it cannot be used)."""
    path = newest_ray_state(exp_dir)
    if path is None:
        return None, ""  # killed before Ray's first snapshot: nothing to say
    why = untrusted(exp_dir)
    if why:
        return None, f"the experiment folder {why}, so Ray's state in it is not loaded"
    why = untrusted(path)
    if why:
        return None, f"{path.name} {why}, so it is not loaded"
    try:
        return read_ray_state(path), ""
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError) as err:
        kind = "truncated or not JSON" if isinstance(err, ValueError) else "not Ray's format"
        return None, f"{path.name} is damaged ({kind})"


def prepare(exp_dir: Path) -> History:
    """Make the experiment folder consistent for a resumed run (see the module docstring)."""
    delete_ray_pickles(exp_dir)
    ray, problem = ray_state_problem(exp_dir)
    folders = read_folders(exp_dir)
    records, to_mark = reconcile(folders, ray)
    history = History(records, ray_resumes=ray is not None)
    known = {f.name for f in folders} | {t.folder for t in (ray or {}).values()}
    for name in orphans(exp_dir, known):
        retire(exp_dir, name)
    if ray is None:
        ignore_ray_state(exp_dir)
        if problem:
            history.notes.append(
                f"[sweep] {problem}: continuing from the trial folders (renamed *.ignored; "
                "unfinished trials start again from epoch 1)"
            )
    else:
        mark_finished_in_ray_state(newest_ray_state(exp_dir), to_mark)  # type: ignore[arg-type]
    for r in records:
        if r.status == RERUN:
            retire(exp_dir, r.folder)
    return history
