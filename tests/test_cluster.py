"""Multi-node Ray: storage classification (fast) and real two-node clusters on this machine.

The integration tests start a head (`ray start --head --block`) and one worker
(`ray start --address`) as separate process groups, each with one CPU, then run
`python -m sweep --address` against them. Two clusters:

- `ray_cluster`: token authentication on (a fresh token, passed as RAY_AUTH_MODE=token +
  RAY_AUTH_TOKEN, exactly as docs/cluster.md tells users); its worker announces the node IP
  127.0.0.2 (loopback too), so Ray sees it as a node on another host.
- `open_cluster`: without token authentication (RAY_AUTH_MODE=disabled), both nodes on this
  machine's IP: a driver that has a token must not switch token mode on against it, and its
  local storage is shared by both nodes.

Each cluster lives in its own --temp-dir, so a plain `ray.init()` elsewhere on this machine
never joins it, and it is torn down by signalling only the processes started here (never
`ray stop`, which would stop every Ray instance on the machine).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT, SMOKE, free_port, run_sweep, sets

from sweep.cluster import (
    ClusterInfo,
    NodeInfo,
    check_reachable,
    require_shared,
    use_token_if_available,
)
from sweep.config import ConfigError, load_config
from sweep.storage import (
    Options,
    StorageInfo,
    check_storage_arg,
    classify_storage,
    journal_path,
    require_journal_ok,
)

RAY = Path(sys.executable).parent / "ray"

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw 0 0
fs1:/export/home /shared nfs4 rw,vers=4.2 0 0
/dev/sdb1 /shared/scratch xfs rw 0 0
10.0.0.2@tcp:/lustre /lus lustre rw 0 0
mountpoint-s3 /mnt/bucket fuse rw,nosuid 0 0
fs1:/export/my\\040data /mnt/my\\040data nfs rw 0 0
"""


# ---------------------------------------------------------------------------- fast, no Ray
@pytest.mark.parametrize(
    "path, kind, fstype",
    [
        ("/shared/alice/results", "network", "nfs4"),
        ("/shared", "network", "nfs4"),
        ("/shared/scratch/results", "local", "xfs"),  # a local disk mounted inside the NFS tree
        ("/sharedx/results", "local", "ext4"),  # a prefix of the name is not a parent
        ("/lus/proj/r", "network", "lustre"),
        ("/tmp/results", "local", "tmpfs"),
        ("/mnt/bucket/sweeps", "object-mount", "fuse.mountpoint-s3"),
        ("/mnt/my data/r", "network", "nfs"),  # /proc/mounts escapes the space as \040
    ],
)
def test_storage_is_classified_by_the_deepest_mount_holding_it(path, kind, fstype):
    where = classify_storage(path, MOUNTS)
    assert (where.kind, where.fstype) == (kind, fstype)
    assert where.shared == (kind != "local")


def test_object_store_uris_are_shared_but_refused_with_the_fix():
    assert classify_storage("s3://bucket/sweeps") == StorageInfo("uri", "s3", "")
    with pytest.raises(ConfigError, match="mount the bucket"):
        check_storage_arg("gs://bucket/sweeps")
    with pytest.raises(ConfigError, match="--journal"):
        check_storage_arg("/shared/results", journal="s3://bucket/journal.log")
    check_storage_arg("/shared/results", journal="/shared/journal.log")


def _cluster(*cpus: float, driver: int = 0, one_host: bool = False) -> ClusterInfo:
    nodes = tuple(
        NodeInfo(f"n{i}", "10.0.0.1" if one_host else f"10.0.0.{i + 1}", c, 0.0)
        for i, c in enumerate(cpus)
    )
    return ClusterInfo("10.0.0.1:6379", nodes, driver_node_id=f"n{driver}")


LOCAL = StorageInfo("local", "ext4", "/")


def test_node_local_storage_fails_only_when_trials_can_leave_the_drivers_node():
    require_shared(Path("/r"), LOCAL, _cluster(4), Options())  # one node: anything goes
    require_shared(Path("/r"), LOCAL, _cluster(4, 0), Options())  # a node with no CPU or GPU
    require_shared(Path("/r"), StorageInfo("network", "nfs", "/"), _cluster(1, 1), Options())
    require_shared(Path("/r"), LOCAL, _cluster(1, 1), Options(shared_storage=True))
    with pytest.raises(ConfigError, match=r"local disk .* 2 nodes .*--shared-storage"):
        require_shared(Path("/r"), LOCAL, _cluster(1, 1), Options())
    with pytest.raises(ConfigError, match="other nodes than this one"):
        require_shared(Path("/r"), LOCAL, _cluster(0, 4), Options())  # head without CPUs


def test_nodes_that_all_run_on_the_drivers_host_share_its_local_disk():
    require_shared(Path("/r"), LOCAL, _cluster(1, 1, 1, one_host=True), Options())
    require_shared(Path("/r"), LOCAL, _cluster(0, 4, one_host=True), Options())
    assert _cluster(1, 1, one_host=True).on_one_host and not _cluster(1, 1).on_one_host
    with pytest.raises(ConfigError, match="3 nodes"):  # one node elsewhere is enough
        nodes = _cluster(1, 1, one_host=True).nodes + (NodeInfo("n2", "10.0.0.9", 1.0, 0.0),)
        require_shared(Path("/r"), LOCAL, ClusterInfo("a", nodes, "n0"), Options())


def test_the_optuna_journal_moves_off_an_object_store_mount_only_when_asked(tmp_path):
    cfg = load_config(SMOKE, ["optuna.trials_per_batch_size=4"])
    bucket = StorageInfo("object-mount", "fuse.mountpoint-s3", "/mnt/bucket")
    with pytest.raises(ConfigError, match="--journal PATH"):
        require_journal_ok(cfg, bucket, Options())
    require_journal_ok(load_config(SMOKE), bucket, Options())  # no Optuna phase, no journal
    require_journal_ok(cfg, bucket, Options(journal=str(tmp_path / "j" / "journal.log")))
    assert journal_path(Options(), tmp_path / "x.log") == str(tmp_path / "x.log")
    assert journal_path(Options(journal=str(tmp_path / "j.log")), Path("/x")) == str(
        tmp_path / "j.log"
    )


def test_an_address_where_nothing_listens_fails_at_once_with_the_fix():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        check_reachable(f"127.0.0.1:{listening.getsockname()[1]}")
        t0 = time.time()
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
            with pytest.raises(ConfigError, match="cannot reach the Ray cluster at '127.0.0.1:"):
                check_reachable(f"127.0.0.1:{closed.getsockname()[1]}")
        assert time.time() - t0 < 15
    with pytest.raises(ConfigError, match="not HEAD:PORT"):
        check_reachable("10.0.0.1")
    check_reachable("auto")  # left to Ray


def test_a_local_ray_and_addresses_left_to_ray_keep_the_auth_mode_as_exported(monkeypatch):
    for var in ("RAY_AUTH_MODE", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")
    for address in (None, "auto", "ray://head:10001"):
        use_token_if_available(address)
        assert "RAY_AUTH_MODE" not in os.environ  # a local Ray decides for itself
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # nothing listens: check_reachable's job, not this one
        use_token_if_available(f"127.0.0.1:{closed.getsockname()[1]}")
    assert "RAY_AUTH_MODE" not in os.environ
    with pytest.raises(ConfigError, match="not HEAD:PORT"):
        use_token_if_available("10.0.0.1")


# ---------------------------------------------------------------------------- real cluster
def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each `ray start --block` we started (it stops its node), then kill leftovers."""
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(p.pid, signal.SIGKILL)  # our own process group (start_new_session)
        except ProcessLookupError:
            pass


def _start_cluster(logs: Path, token: str | None, worker_ip: str | None = None):
    """A head and one worker, one CPU each; with `token`, token authentication on, else off.
    Yields the address; stops both nodes afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    if token:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    else:  # this machine's ~/.ray/auth_token would otherwise switch `ray start --head` to token
        env.update(RAY_AUTH_MODE="disabled")
    temp = tempfile.mkdtemp(prefix="rayc", dir="/tmp")  # short: Ray's socket paths are limited
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = [
        "--num-cpus=1",
        "--num-gpus=0",
        "--block",
        "--disable-usage-stats",
        f"--dashboard-agent-listen-port={free_port()}",
    ]
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        with open(logs / f"{name}.log", "w") as log:
            procs.append(
                subprocess.Popen(
                    [str(RAY), "start", *args, *common],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    try:
        start(
            "head",
            "--head",
            f"--port={port}",
            f"--temp-dir={temp}",
            "--include-dashboard=false",
            f"--ray-client-server-port={free_port()}",
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            assert procs[0].poll() is None, (logs / "head.log").read_text()[-2000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        start(
            "worker",
            f"--address={address}",
            *([f"--node-ip-address={worker_ip}"] * bool(worker_ip)),
        )
        waiter = (
            "import ray, sys, time; ray.init(address=sys.argv[1]); t = time.time()\n"
            "while sum(n['Alive'] for n in ray.nodes()) < 2 and time.time() - t < 60:\n"
            "    time.sleep(0.5)\n"
            "print(sum(n['Alive'] for n in ray.nodes()))"
        )
        for _ in range(2):  # under a parallel test run the GCS can time out a first connection
            out = subprocess.run(
                [sys.executable, "-c", waiter, address],
                env=env,
                text=True,
                capture_output=True,
                timeout=120,
            )
            if out.stdout.strip() == "2":
                break
        assert out.stdout.strip() == "2", (
            out.stderr[-2000:],
            (logs / "worker.log").read_text()[-2000:],
        )
        yield address
    finally:
        _stop(procs)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """Token authentication on, the worker as if on another host; yields (address, token,
    logs)."""
    token = secrets.token_hex(32)
    logs = tmp_path_factory.mktemp("ray-logs")
    for address in _start_cluster(logs, token, worker_ip="127.0.0.2"):
        yield address, token, logs


@pytest.fixture(scope="module")
def open_cluster(tmp_path_factory):
    """Without token authentication, both nodes on this machine's IP; yields the address."""
    yield from _start_cluster(tmp_path_factory.mktemp("ray-open-logs"), token=None)


def _sweep(
    address: str, token: str, storage: Path, *extra: str, auth_mode: str | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env["RAY_AUTH_TOKEN"] = token  # RAY_AUTH_MODE is left to the sweep unless given
    if auth_mode:
        env["RAY_AUTH_MODE"] = auth_mode
    return run_sweep(
        storage, "--address", address, "--no-report", *extra, env=env, timeout=240, check=False
    )


@pytest.mark.integration
@pytest.mark.slow
def test_node_local_storage_on_two_nodes_fails_before_any_trial(ray_cluster, tmp_path):
    address, token, _ = ray_cluster
    out = _sweep(address, token, tmp_path / "local", auth_mode="token")
    assert out.returncode == 2, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: storage ") and "local disk" in last, last
    assert "2 nodes" in last and "--shared-storage" in last and "NFS" in last
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "local" / "smoke").exists()  # nothing written, no trial started


@pytest.mark.integration
@pytest.mark.slow
def test_smoke_sweep_spreads_over_both_nodes_and_the_analysis_reads_it(ray_cluster, tmp_path):
    address, token, logs = ray_cluster
    storage = tmp_path / "shared"
    # no RAY_AUTH_MODE here: the sweep must switch token mode on itself for --address.
    # 6-epoch trials: with 2-epoch ones (about 1 s each) the head node once ran all 12 before
    # the worker node's first trial process had started, under make test's load
    out = _sweep(address, token, storage, "--shared-storage", *sets("epochs=6"))
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    assert "2 nodes" in out.stdout and "0 GPUs" in out.stdout
    assert "seen by 2 of 2 nodes" in out.stdout

    exp = storage / "smoke"
    trials = sorted(p.parent for p in exp.glob("*/params.json"))
    assert len(trials) == 12  # 2 batch sizes x 3 lrs x 2 warmups, all in the shared folder
    rows = [
        json.loads(line) for t in trials for line in (t / "result.json").read_text().splitlines()
    ]
    assert len(rows) == 72  # 6 epochs each
    nodes = {r["node_id"] for r in rows}
    assert len(nodes) == 2, nodes  # trials ran on both nodes
    assert all(r["hostname"] == socket.gethostname() for r in rows)
    assert not list(storage.glob(".sweep-probe-*"))  # the probe cleans up

    report = tmp_path / "report"
    fit = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis.fit_rule",
            "--results",
            str(exp),
            "--out",
            str(report),
            "--n-boot",
            "50",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert fit.returncode == 0, fit.stderr[-3000:]
    best = json.loads((report / "fit.json").read_text())["best_lr"]
    assert {b["batch_size"] for b in best} == {8, 32}


@pytest.mark.integration
@pytest.mark.slow
def test_the_digits_example_runs_on_both_nodes_from_code_ray_shipped(ray_cluster, tmp_path):
    """examples/digits (a model and a data set by import path) through `python -m sweep` and
    the report on the two-node cluster. The driver runs outside the repository and finds
    `examples` through PYTHONPATH, which the nodes' workers do not get: they can only import it
    from the package Ray shipped (runtime_env py_modules)."""
    address, token, _ = ray_cluster
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env.update(RAY_AUTH_TOKEN=token, PYTHONPATH=str(ROOT))
    tiny = ["batch_sizes=[8, 32]", "epochs=2", "optuna.trials_per_batch_size=0", "confirm.top_k=0"]
    cmd = [sys.executable, "-m", "sweep", "--config", str(ROOT / "examples/digits/sweep.yaml")]
    cmd += ["--storage", str(tmp_path / "shared"), "--shared-storage", "--address", address]
    cmd += [arg for t in tiny for arg in ("--set", t)]
    out = subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    assert "2 nodes" in out.stdout
    exp = tmp_path / "shared" / "digits"
    params = [json.loads(p.read_text()) for p in exp.glob("*/params.json")]
    assert len(params) == 4  # 2 batch sizes x 2 warmups
    assert {(p["model"], p["dataset"]) for p in params} == {
        ("examples.digits.model:build", "examples.digits.data:load")
    }
    assert all(p["params"] == {"hidden": 64, "dropout": 0.1} for p in params)
    rows = [json.loads(x) for r in exp.glob("*/result.json") for x in r.read_text().splitlines()]
    assert len({r["node_id"] for r in rows}) == 2  # both nodes imported the shipped package
    assert all(r["val_acc"] > 0.8 for r in rows if r["epoch"] == 2)
    assert (exp / "report" / "fit.json").is_file()


# ---------------------------------------------------------------------------- auth modes
@pytest.mark.integration
def test_the_sweep_follows_each_clusters_own_auth_mode(ray_cluster, open_cluster, monkeypatch):
    token_address, token, _ = ray_cluster
    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)  # restored (absent) after the test
    monkeypatch.setenv("RAY_AUTH_TOKEN", "the-token-of-some-other-cluster")
    use_token_if_available(open_cluster)  # a token at hand, but this cluster wants none
    assert os.environ["RAY_AUTH_MODE"] == "disabled"
    monkeypatch.delenv("RAY_AUTH_MODE")
    with pytest.raises(ConfigError, match="refused the token in RAY_AUTH_TOKEN"):
        use_token_if_available(token_address)
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    use_token_if_available(token_address)
    assert os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(ConfigError, match="requires token authentication, but RAY_AUTH_MODE"):
        use_token_if_available(token_address)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with pytest.raises(ConfigError, match="runs without token authentication, but RAY_AUTH"):
        use_token_if_available(open_cluster)
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "/nonexistent/token")
    with pytest.raises(ConfigError, match="this machine has no token"):
        use_token_if_available(token_address)


@pytest.mark.integration
@pytest.mark.slow
def test_a_cluster_without_tokens_runs_every_trial_on_both_nodes_with_a_token_at_hand(
    open_cluster, tmp_path
):
    """The driver has a token (RAY_AUTH_TOKEN), the cluster runs without token
    authentication: the sweep must not switch token mode on (every trial would be cancelled),
    and the two nodes of this one machine share its local disk (no --shared-storage)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    storage = tmp_path / "local"
    out = run_sweep(
        storage,
        "--address",
        open_cluster,
        "--no-report",
        # 30 epochs (about 5 s a trial): the two trials overlap even when the second one's
        # start lags under load, so each needs the other node's one CPU
        *sets("grid.warmup_epochs=[0]", "grid.lr_multipliers=[1]", "epochs=30"),
        env=env,
        timeout=240,
        check=False,
    )
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    assert "2 nodes" in out.stdout and "without token authentication" in out.stdout
    assert "every node runs on this machine" in out.stdout
    rows = [json.loads(x) for r in storage.glob("smoke/*/result.json") for x in r.open()]
    assert len(rows) == 60  # 2 trials (batch 8 and 32), 30 epochs each: every trial ran
    assert len({r["node_id"] for r in rows}) == 2  # one CPU per node: one trial on each


@pytest.mark.integration
def test_token_mode_exported_against_an_open_cluster_is_one_line_and_exit_2(
    open_cluster, tmp_path
):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    out = run_sweep(tmp_path, "--address", open_cluster, env=env, timeout=120, check=False)
    assert out.returncode == 2, (out.stdout[-2000:], out.stderr[-3000:])
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert "runs without token authentication, but RAY_AUTH_MODE=token" in out.stderr
    assert not any(tmp_path.iterdir())  # nothing written
