"""Crash-proof sweeps, with real Ray, real signals and a real Optuna journal: the whole driver
group killed (SIGKILL) or terminated (SIGTERM) in the grid, Optuna and confirmation phases, with
one epoch per trial and with several, then the same command; a second run on a live experiment;
a moved folder; damaged and planted files; a full disk; a umask 077 caller.

After every chain of kills the experiment must hold each configuration finished exactly once and
a journal that agrees with the trial folders (`check_experiment`).
"""

import json
import os
import pickle
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from conftest import CONFIGS, ROOT, sets, sweep_cmd
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from sweep.resume import config_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUADRATIC = CONFIGS / "quadratic.yaml"  # seconds per trial, with a known best lr
# 2 grid + 4 Optuna (+ widenings and bracketing) + 2 confirmation trials
SMALL = sets(
    "batch_sizes=[4,16]",
    "grid.lr_multipliers=[1]",
    "optuna.trials_per_batch_size=2",
    "confirm.top_k=1",
    "confirm.seeds=1",
)


def start(cmd: list[str], log: Path, umask: int = -1) -> subprocess.Popen:
    # a session of its own: the driver and the Ray it starts form one process group
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        umask=umask,  # -1: the test's own
    )


def wait_for(proc: subprocess.Popen, log: Path, text: str, timeout_s: float = 240) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if text in log.read_text():
            return
        assert proc.poll() is None, f"ended before '{text}':\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"'{text}' never appeared:\n{log.read_text()[-3000:]}")


def midway(exp: Path) -> bool:
    """A trial has finished an epoch (its checkpoint is in Ray's hands) but not its last."""
    try:
        trials = trial_rows(exp)
    except (OSError, ValueError):  # a file being written right now
        return False
    return any(
        rows and rows[-1]["epoch"] < config["epochs"] and not rows[-1]["diverged"]
        for config, rows in trials.values()
    )


def stop_in_phase(
    cmd: list[str],
    log: Path,
    phase: str,
    sig: int,
    umask: int = -1,
    midway_in: Path | None = None,
) -> str:
    """Run the command until a trial of `phase` finishes (and, with `midway_in`, until a trial
    of that experiment is between two epochs), then signal the whole group."""
    proc = start(cmd, log, umask)
    wait_for(proc, log, f"| {phase} B=")
    deadline = time.time() + 60
    while midway_in is not None and not midway(midway_in) and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, sig)
    code = proc.wait(timeout=120)
    out = log.read_text()
    if sig == signal.SIGTERM:
        assert code == 143, out[-3000:]
        assert "run the same command again to resume" in out and "Traceback" not in out
    return out


def finish(cmd: list[str], log: Path, umask: int = -1) -> str:
    proc = start(cmd, log, umask)
    assert proc.wait(timeout=400) == 0, log.read_text()[-3000:]
    return log.read_text()


def trial_rows(exp: Path) -> dict[str, tuple[dict, list[dict]]]:
    out = {}
    for params in exp.glob("*/params.json"):
        result = params.parent / "result.json"
        text = result.read_text() if result.exists() else ""
        rows = [json.loads(x) for x in text.splitlines() if x.strip()]
        out[params.parent.name] = (json.loads(params.read_text()), rows)
    return out


def check_experiment(exp: Path, log: str) -> dict[str, tuple[dict, list[dict]]]:
    """Every configuration finished exactly once; the journal agrees with the trial folders:
    nothing left RUNNING, nobody told twice, nobody missing."""
    trials = trial_rows(exp)
    keys = Counter(config_key(c) for c, _ in trials.values())
    assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1]
    # the runs' logs together: the last run may find nothing left to run (the kill came after
    # the last trial finished) and print no progress line
    planned = int(re.findall(r"\[sweep (\d+)/(\d+)\]", log)[-1][1])
    assert len(trials) == planned, (len(trials), planned)
    batch_sizes = {c["batch_size"] for c, _ in trials.values()}
    assert Counter(k[0] for k in keys)["confirm"] == len(batch_sizes)  # top_k 1 x 1 seed
    by_id = {}
    for name, (config, rows) in trials.items():
        epochs = [r["epoch"] for r in rows]
        assert sorted(set(epochs)) == list(range(1, max(epochs) + 1)), name
        assert max(epochs) == config["epochs"] or rows[-1]["diverged"], name
        # an epoch runs twice only right after a restore from a checkpoint older than it
        repeats = [
            r for prev, r in zip(rows, rows[1:], strict=False) if r["epoch"] <= prev["epoch"]
        ]
        assert all(r["iterations_since_restore"] == 1 for r in repeats), name
        by_id[rows[-1]["trial_id"]] = (config, rows)

    storage = JournalStorage(JournalFileBackend(str(exp / "optuna-journal.log")))
    studies = {
        n: optuna.load_study(study_name=n, storage=storage).trials
        for n in optuna.get_all_study_names(storage)
    }
    assert studies
    for name, told in studies.items():
        assert {t.state.name for t in told} <= {"COMPLETE", "FAIL"}, name
        complete = [t for t in told if t.state.name == "COMPLETE"]
        ids = Counter(t.user_attrs["trial_id"] for t in complete)
        assert max(ids.values()) == 1, (name, ids)
        for t in complete:
            config, rows = by_id[t.user_attrs["trial_id"]]  # KeyError: told, but no folder
            assert (config["lr"], config["phase"]) == (t.params["lr"], t.user_attrs["phase"])
            if not rows[-1]["diverged"]:
                assert t.value == rows[-1]["val_loss"], name
    for b in batch_sizes:
        current = max(
            (n for n in studies if re.search(rf"-B{b}(-w\d+)?$", n)),
            key=lambda n: int(n.rsplit("-w", 1)[1]) if "-w" in n.rsplit("-B", 1)[1] else 0,
        )
        told = {t.user_attrs["trial_id"] for t in studies[current] if t.state.name == "COMPLETE"}
        searched = {
            tid
            for tid, (c, _) in by_id.items()
            if c["batch_size"] == b and c["phase"] != "confirm"
        }
        assert searched <= told, (current, searched - told)  # nobody missing
    return trials


class Planted:
    """Unpickling this runs code: it leaves a file behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_kills_in_every_phase_with_one_and_with_three_epochs(tmp_path):
    """The two chains below, side by side: each mostly waits for Python and Ray to start, so
    together they take little longer than the longer one."""
    errors: dict[str, BaseException] = {}

    def run(chain) -> None:
        try:
            chain(tmp_path / chain.__name__)
        except BaseException as err:  # noqa: BLE001 - reported below, with the chain's name
            errors[chain.__name__] = err

    threads = [threading.Thread(target=run, args=(c,)) for c in (one_epoch, three_epochs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, err in errors.items():
        raise AssertionError(f"{name}: {err}") from err


def one_epoch(tmp_path: Path) -> None:
    """One epoch per trial: SIGKILL in the grid phase, SIGTERM in the Optuna phase (a second
    run meanwhile is refused), the folder moved and pickles planted, SIGKILL in the confirmation
    phase, then the same command; all of it under umask 077."""
    tmp_path.mkdir()
    before, after = tmp_path / "before", tmp_path / "after"
    cmd = sweep_cmd(before, "--no-report", *SMALL, config=QUADRATIC)
    exp = before / "quadratic"

    stop_in_phase(cmd, tmp_path / "1.log", "grid", signal.SIGKILL, umask=0o077)

    # resumed; a second run on the live experiment is refused before Ray starts
    log2 = tmp_path / "2.log"
    proc = start(cmd, log2, umask=0o077)
    wait_for(proc, log2, "resuming the unfinished sweep")
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"is running (pid {proc.pid} on " in second.stderr
    wait_for(proc, log2, "| optuna B=")
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    assert "run the same command again to resume" in log2.read_text()

    # the folder is moved elsewhere, and another user planted pickles in it
    shutil.move(str(before), str(after))
    exp = after / "quadratic"
    marker = tmp_path / "planted-code-ran"
    for name in ("searcher-state-2099-01-01_00-00-00.pkl", "callback-states-2099.pkl"):
        (exp / name).write_bytes(pickle.dumps(Planted(marker)))
    state = json.loads(max(exp.glob("experiment_state-*.json")).read_text())
    state["runner_data"]["_stopper"] = {
        "_type": "CLOUDPICKLE_FALLBACK",
        "value": pickle.dumps(Planted(marker)).hex(),
    }
    planted = exp / "experiment_state-2099-01-01_00-00-00.json"  # the newest: Ray's pick
    planted.write_text(json.dumps(state))
    planted.chmod(0o666)

    cmd = sweep_cmd(after, "--no-report", *SMALL, config=QUADRATIC)
    out3 = stop_in_phase(cmd, tmp_path / "3.log", "confirm", signal.SIGKILL, umask=0o077)
    assert "is writable by other users (group or world), so it is not loaded" in out3
    out4 = finish(cmd, tmp_path / "4.log", umask=0o077)

    assert not marker.exists(), "a planted pickle was loaded"
    assert not before.exists(), "the moved sweep wrote into its old folder"
    check_experiment(exp, out3 + out4)
    run = json.loads((exp / "sweep_run.json").read_text())
    assert run["journal"] == "optuna-journal.log"  # relative: it moves with the folder
    for path in [after, *after.rglob("*")]:
        if not path.is_symlink() and not path.name.startswith("experiment_state-2099"):
            assert not path.stat().st_mode & 0o077, path  # umask 077 kept: nothing shared
    token = Path.home() / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600


def three_epochs(tmp_path: Path) -> None:
    """Three epochs per trial: SIGTERM in the grid phase (Ray continues a trial from its
    checkpoint), SIGKILL in the Optuna phase, SIGTERM in the confirmation phase, then a torn
    journal line and a truncated Ray state, then the same command."""
    tmp_path.mkdir()
    cmd = sweep_cmd(tmp_path, "--no-report", *SMALL, *sets("epochs=3"), config=QUADRATIC)
    exp = tmp_path / "quadratic"

    # stopped while a trial is between epochs: Ray's last snapshot holds its checkpoint
    stop_in_phase(cmd, tmp_path / "1.log", "grid", signal.SIGTERM, midway_in=exp)
    out2 = stop_in_phase(cmd, tmp_path / "2.log", "optuna", signal.SIGKILL)
    out3 = stop_in_phase(cmd, tmp_path / "3.log", "confirm", signal.SIGTERM)
    continued = [n for n in re.findall(r"(\d+) continue from their last", out2 + out3) if n != "0"]
    assert continued, "Ray's state never continued a trial"

    # a crash while the journal and Ray's state were being written
    with (exp / "optuna-journal.log").open("a") as f:
        f.write('{"op_code":6,"worker_id":"x","trial_id":3,"us')
    newest = max(exp.glob("experiment_state-*.json"))
    newest.write_text(newest.read_text()[:1000])

    out4 = finish(cmd, tmp_path / "4.log")
    assert "repaired the Optuna journal" in out4 and "is damaged (truncated or not JSON)" in out4
    check_experiment(exp, out3 + out4)
    # Ray continued a trial from its last epoch checkpoint after a stop (its worker says so)
    assert re.search(r"Restored on \S+ from checkpoint", out2 + out3), "nothing continued"


def test_a_full_disk_stops_the_sweep_clearly_and_it_resumes_once_there_is_space(tmp_path):
    if not shutil.which("unshare"):
        pytest.skip("needs unshare (util-linux) for a private tmpfs")
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {tmp_path}"],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a private tmpfs here: {probe.stderr.decode().strip()}")
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    tiny = sets("batch_sizes=[16]", "grid.lr_multipliers=[1,3]")
    cmd = " ".join(sweep_cmd(disk, "--no-report", *SMALL, *tiny, config=QUADRATIC))
    script = (
        f"mount -t tmpfs -o size=100k tmpfs {disk} && "
        f"{{ {cmd} > {tmp_path}/full.log 2>&1; echo $? > {tmp_path}/full.rc; }}; "
        f"mount -o remount,size=64m {disk} && "
        f"{{ {cmd} > {tmp_path}/freed.log 2>&1; echo $? > {tmp_path}/freed.rc; }}; "
        f"cp -a {disk} {kept}"
    )
    subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=ROOT, timeout=600, check=True)

    full = (tmp_path / "full.log").read_text()
    assert (tmp_path / "full.rc").read_text().strip() == "75", full[-3000:]
    last = full.strip().splitlines()[-1]  # Ray may have logged failed trials above it
    assert last.startswith("error: no space left on the device (writing "), full[-3000:]
    assert "run the same command again to resume" in last
    freed = (tmp_path / "freed.log").read_text()
    assert (tmp_path / "freed.rc").read_text().strip() == "0", freed[-3000:]
    assert "resuming the unfinished sweep" in freed
    check_experiment(kept / "quadratic", freed)
