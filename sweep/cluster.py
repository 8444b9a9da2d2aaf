"""Running the sweep on an existing multi-node Ray cluster: connection and checks.

`python -m sweep --address HEAD:PORT` (or `RAY_ADDRESS`) connects to a running cluster instead
of starting a local Ray; the CLI and `sweep.runner` call in here at three points:

- `use_token_if_available(address)`, before anything imports Ray: follow the cluster's own
  authentication mode. Ray reads `RAY_AUTH_MODE` once, when it loads its configuration, and
  turns token mode on for an explicit address never (a driver that has the token of a cluster
  that demands one fails after ~20 s of retries), while a driver in token mode on a cluster
  that runs without tokens connects but gets every trial cancelled ("The actor never ran").
  So the sweep asks the cluster's GCS once, without a token, whether it answers (one gRPC call
  through the grpc package Ray depends on; no private Ray function), and sets `RAY_AUTH_MODE`
  to match: `token` (with a token at hand, which the GCS must accept) or `disabled`. A mode
  the user exported that contradicts the cluster, a missing or refused token: one line naming
  the fix (`ConfigError`, exit code 2), before Ray starts. A cluster that cannot be asked (TLS,
  a changed protocol) is left to `RAY_AUTH_MODE` as exported.
- `check_reachable(address)` before `ray.init`: an address where nothing listens fails at
  once (ray.init would retry for minutes).
- `check_cluster(cfg, storage, options)` after `ray.init`, before anything is written: prints
  the nodes and GPUs the driver sees and decides whether the results folder is reachable from
  every node. With trials on a node of another host the storage must be shared
  (`sweep.storage` classifies it) or declared shared (`--shared-storage`); nodes that all run
  on the driver's host (the same node IP) share its disk. A node-local path fails with one line
  naming the problem and the fix (`ConfigError`, exit code 2). Otherwise the path is probed:
  one zero-CPU task per node checks that it sees a marker file the driver wrote, that it can
  import this project, and that the data set is available there.

See docs/cluster.md.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.config import ConfigError
from sweep.storage import Options, StorageInfo, classify_storage, require_journal_ok

if TYPE_CHECKING:
    from sweep.config import SweepConfig

PROBE_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 5.0
PROBE_PREFIX = ".sweep-probe-"
# Any call to the GCS tells whether it demands a token: Ray's server answers a call without
# one, on a cluster with token authentication, with UNAUTHENTICATED before it runs the method.
GCS_PROBE_METHOD = "/ray.rpc.NodeInfoGcsService/GetClusterId"


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    ip: str
    cpus: float
    gpus: float

    @property
    def runs_trials(self) -> bool:
        return self.cpus > 0 or self.gpus > 0


@dataclass(frozen=True)
class ClusterInfo:
    address: str
    nodes: tuple[NodeInfo, ...]  # alive nodes
    driver_node_id: str

    @property
    def cpus(self) -> float:
        return sum(n.cpus for n in self.nodes)

    @property
    def gpus(self) -> float:
        return sum(n.gpus for n in self.nodes)

    @property
    def trial_nodes(self) -> tuple[NodeInfo, ...]:
        return tuple(n for n in self.nodes if n.runs_trials)

    @property
    def needs_shared_storage(self) -> bool:
        """True when a trial may run on a node other than the driver's."""
        return {n.node_id for n in self.trial_nodes} != {self.driver_node_id}

    @property
    def on_one_host(self) -> bool:
        """Every node that runs trials has the driver's node IP: one machine, one disk."""
        driver_ips = {n.ip for n in self.nodes if n.node_id == self.driver_node_id}
        return len(driver_ips) == 1 and {n.ip for n in self.trial_nodes} <= driver_ips


# ---------------------------------------------------------------------------- connection
def resolve_address(address: str | None) -> str | None:
    """The cluster to join: --address, else RAY_ADDRESS, else None (a local Ray)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def _explicit(address: str | None) -> str | None:
    """HEAD:PORT of a cluster named explicitly; None for a local Ray and for `auto`, `local`
    and `ray://` addresses, which are left to Ray."""
    where = resolve_address(address)
    if where is None or where in ("auto", "local") or "://" in where:
        return None
    return where


def _host_port(where: str) -> tuple[str, int]:
    host, _, port = where.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ConfigError(
            f"Ray address '{where}' is not HEAD:PORT; pass --address (or "
            "RAY_ADDRESS) as `ray start --head` printed it, e.g. 10.0.0.1:6379"
        )
    return host, int(port)


def check_reachable(address: str | None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast (ConfigError) when nothing listens at HEAD:PORT: ray.init would retry for
    minutes. `auto`, `local` and `ray://` addresses are left to Ray."""
    where = _explicit(address)
    if where is None:
        return
    host, port = _host_port(where)
    hosts = [host]
    if host in ("localhost", "127.0.0.1", "::1"):  # Ray itself dials this node's own IP
        from ray.util import get_node_ip_address

        hosts.append(get_node_ip_address())
    problem: OSError | None = None
    for h in hosts:
        try:
            socket.create_connection((h, port), timeout=timeout_s).close()
            return
        except OSError as err:
            problem = err
    raise ConfigError(
        f"cannot reach the Ray cluster at '{where}' ({problem}); check the address (head:port, "
        "as `ray start --head` printed it), that the head is running and that its port is open "
        "from this machine, or leave --address and RAY_ADDRESS out for a local Ray"
    )


def token_at_hand() -> tuple[str, str] | None:
    """(the Ray token, where it came from) as Ray looks for one: RAY_AUTH_TOKEN, else the file
    RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token; None when there is none."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN"
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        token = path.expanduser().read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return (token, str(path)) if token else None


def gcs_answer(where: str, token: str | None = None, timeout_s: float = CONNECT_TIMEOUT_S) -> str:
    """One call to the GCS at HEAD:PORT, with `token` or without one: 'ok' (it answered),
    'denied' (UNAUTHENTICATED: it demands a token, or another one) or 'unknown' (nothing
    listens, TLS, or a protocol this check does not know)."""
    import grpc

    metadata = (("authorization", f"Bearer {token}"),) if token else None
    with grpc.insecure_channel(where) as channel:
        call = channel.unary_unary(GCS_PROBE_METHOD)  # raw bytes: b"" is the empty request
        try:
            call(b"", timeout=timeout_s, metadata=metadata)
        except grpc.RpcError as err:
            return "denied" if err.code() == grpc.StatusCode.UNAUTHENTICATED else "unknown"
    return "ok"


def use_token_if_available(address: str | None) -> None:
    """For an explicit cluster address, set `RAY_AUTH_MODE` to the cluster's own mode: `token`
    when its GCS demands a token (with the token at hand, which it must accept), `disabled`
    when it answers without one. A mode exported by the user must match it. ConfigError (one
    line, the fix) otherwise. Call it before Ray is imported: Ray reads the mode once."""
    where = _explicit(address)
    if where is None:
        return
    _host_port(where)  # a malformed address: one line
    answer = gcs_answer(where)
    if answer == "unknown":  # nothing listens (check_reachable says so), TLS, ...
        return
    wants_token = answer == "denied"
    exported = os.environ.get("RAY_AUTH_MODE")
    if exported is not None and (exported.lower() == "token") != wants_token:
        if wants_token:
            raise ConfigError(
                f"the Ray cluster at '{where}' requires token authentication, but "
                f"RAY_AUTH_MODE={exported} here; unset RAY_AUTH_MODE (the sweep follows the "
                "cluster) or export RAY_AUTH_MODE=token, with the cluster's token in "
                "RAY_AUTH_TOKEN or ~/.ray/auth_token (see docs/cluster.md, Tokens)"
            )
        raise ConfigError(
            f"the Ray cluster at '{where}' runs without token authentication, but "
            "RAY_AUTH_MODE=token here, which would get every trial cancelled; unset "
            "RAY_AUTH_MODE (the sweep follows the cluster), or restart the cluster's nodes "
            "with RAY_AUTH_MODE=token and a token (see docs/cluster.md, Tokens)"
        )
    if not wants_token:
        os.environ["RAY_AUTH_MODE"] = "disabled"
        return
    found = token_at_hand()
    if found is None:
        raise ConfigError(
            f"the Ray cluster at '{where}' requires token authentication and this machine has "
            "no token; copy the cluster's token (`ray get-auth-token` on its head) into "
            "RAY_AUTH_TOKEN or ~/.ray/auth_token (see docs/cluster.md, Tokens)"
        )
    token, source = found
    if gcs_answer(where, token) == "denied":
        raise ConfigError(
            f"the Ray cluster at '{where}' refused the token in {source}; use the cluster's "
            "own token (`ray get-auth-token` on its head), in RAY_AUTH_TOKEN or "
            "~/.ray/auth_token (see docs/cluster.md, Tokens)"
        )
    os.environ["RAY_AUTH_MODE"] = "token"


def connect_error(address: str | None, err: BaseException) -> ConfigError:
    where = resolve_address(address)
    if where is None:
        return ConfigError(
            f"cannot start a local Ray ({err}); check `ray status` and free "
            "memory, or pass --address HEAD:PORT of a running cluster"
        )
    return ConfigError(
        f"cannot reach the Ray cluster at '{where}' ({err}); check the address (head:port, as "
        "`ray start --head` printed it) and that this machine has the cluster's token "
        "(RAY_AUTH_TOKEN or ~/.ray/auth_token, see docs/cluster.md), or leave --address and "
        "RAY_ADDRESS out for a local Ray"
    )


def cluster_info() -> ClusterInfo:
    """The alive nodes of the Ray cluster this process is connected to."""
    import ray

    nodes = tuple(
        NodeInfo(
            n["NodeID"],
            n.get("NodeManagerAddress", "?"),
            float(n.get("Resources", {}).get("CPU", 0.0)),
            float(n.get("Resources", {}).get("GPU", 0.0)),
        )
        for n in ray.nodes()
        if n.get("Alive")
    )
    ctx = ray.get_runtime_context()
    return ClusterInfo(
        address=str(getattr(ctx, "gcs_address", "") or ""),
        nodes=nodes,
        driver_node_id=ctx.get_node_id(),
    )


def describe(info: ClusterInfo) -> str:
    n = len(info.nodes)
    hosts = ", ".join(sorted({node.ip for node in info.nodes}))
    line = (
        f"[sweep] Ray at {info.address or 'local'}: {n} node{'s' if n != 1 else ''} "
        f"({hosts}), {info.cpus:g} CPUs, {info.gpus:g} GPUs"
    )
    return line if n == 1 else f"{line}; trials may run on {len(info.trial_nodes)} of them"


def check_fits(cfg: SweepConfig, nodes: tuple[NodeInfo, ...], where: str) -> None:
    """ConfigError when no node can hold one trial: Ray would wait for it forever."""
    r = cfg.resources
    most_cpus = max((n.cpus for n in nodes), default=0.0)
    if r.cpu_per_trial > most_cpus:
        raise ConfigError(
            f"resources.cpu_per_trial={r.cpu_per_trial:g}, but the largest node of {where} has "
            f"{most_cpus:g} CPUs, so no trial could ever start; use --set "
            f"resources.cpu_per_trial={max(most_cpus, 1):g} (or less)"
        )
    gpu = r.gpu_per_trial
    most_gpus = max((n.gpus for n in nodes), default=0.0)
    if not isinstance(gpu, str) and gpu > most_gpus:
        raise ConfigError(
            f"resources.gpu_per_trial={gpu:g}, but the largest node of {where} has "
            f"{most_gpus:g} GPUs, so no trial could ever start; use --set "
            "resources.gpu_per_trial=auto (a share of a GPU when there is one)"
        )


def local_nodes() -> tuple[NodeInfo, ...]:
    """The node a local `ray.init()` would start, at most: this machine's CPUs and CUDA devices
    (Ray may count fewer CPUs in a container; `check_cluster` checks again with its count)."""
    import torch

    return (NodeInfo("local", "127.0.0.1", float(os.cpu_count() or 1), torch.cuda.device_count()),)


# ---------------------------------------------------------------------------- storage
def require_shared(storage: Path, where: StorageInfo, info: ClusterInfo, options: Options) -> None:
    """Fail (ConfigError) when trials on other nodes could not write to `storage`."""
    if not info.needs_shared_storage or info.on_one_host or where.shared or options.shared_storage:
        return
    n = len(info.trial_nodes)
    runs = f"trials run on {n} nodes" if n > 1 else "trials run on other nodes than this one"
    raise ConfigError(
        f"storage '{storage}' is on this machine's local disk ({where.fstype} at "
        f"{where.mount or '/'}), but the Ray cluster has {len(info.nodes)} nodes and {runs}, "
        "and Ray (since 2.7) does not sync their results to the head; pass --storage "
        "(STORAGE=) on a filesystem every node mounts at the same path (NFS, Lustre, ...), or "
        "add --shared-storage if every node does see this path"
    )


# ---------------------------------------------------------------------------- node probe
def _probe(marker: str, dataset: str, data_dir: str) -> dict[str, Any]:
    """Runs on one node: does it see the storage and have the code and the data?"""
    import ray

    out: dict[str, Any] = {
        "node_id": ray.get_runtime_context().get_node_id(),
        "hostname": socket.gethostname(),
        "sees_storage": os.path.exists(marker),
        "problem": "",
    }
    from trainables.data import DataUnavailable, check_available

    try:
        check_available(dataset, data_dir)
    except DataUnavailable as err:
        out["problem"] = str(err)
    return out


def probe_nodes(
    storage: Path,
    nodes: tuple[NodeInfo, ...],
    dataset: str,
    data_dir: str,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> list[dict[str, Any]]:
    """One zero-CPU task per node; ConfigError naming the first node that lacks something."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    storage.mkdir(parents=True, exist_ok=True)
    marker = storage / f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    marker.write_text("written by the sweep driver; every node must see this file\n")
    remote = ray.remote(num_cpus=0, max_retries=0)(_probe)
    try:
        refs = {
            remote.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False)
            ).remote(str(marker), dataset, data_dir): n
            for n in nodes
        }
        ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
        answers = []
        for ref in ready:
            node = refs[ref]
            try:
                answer = ray.get(ref)
            except Exception as err:  # noqa: BLE001 - the task's failure is the finding
                first = str(err).strip().splitlines()[-1][:200]
                raise ConfigError(
                    f"node {node.ip} ({node.node_id[:8]}) cannot run this project's code "
                    f"({first}); install the same project and Python packages on every node "
                    "(shared venv or container image), see docs/cluster.md"
                ) from None
            if not answer["sees_storage"]:
                raise ConfigError(
                    f"node {answer['hostname']} ({node.ip}) does not see the storage folder "
                    f"'{storage}' that this driver writes; mount the same shared filesystem "
                    "at the same path on every node, or pass --storage on one that is"
                )
            if answer["problem"]:
                raise ConfigError(f"node {answer['hostname']} ({node.ip}): {answer['problem']}")
            answers.append(answer)
        for ref in pending:
            node = refs[ref]
            ray.cancel(ref, force=True)
            print(
                f"[sweep] warning: node {node.ip} ({node.node_id[:8]}) did not answer the "
                f"storage probe within {timeout_s:g} s; not checked",
                flush=True,
            )
        return answers
    finally:
        marker.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- the hook
def check_cluster(cfg: SweepConfig, storage: Path, options: Options) -> ClusterInfo:
    """After ray.init, before any trial or file: print the cluster, check storage and nodes."""
    info = cluster_info()
    print(describe(info), flush=True)
    check_fits(cfg, info.trial_nodes, "this Ray" if len(info.nodes) == 1 else "the cluster")
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        print(
            "[sweep] warning: this Ray runs without token authentication: anyone who can "
            "reach its ports can run code on it; see docs/cluster.md (tokens)",
            flush=True,
        )
    where = classify_storage(storage)
    require_shared(storage, where, info, options)
    require_journal_ok(cfg, where, options)
    if info.needs_shared_storage and info.trial_nodes:
        if where.shared:
            reason = f"{where.fstype} at {where.mount}"
        elif options.shared_storage:
            reason = "declared by --shared-storage"
        else:
            reason = f"every node runs on this machine, {info.trial_nodes[0].ip}"
        answers = probe_nodes(storage, info.trial_nodes, cfg.dataset, cfg.resolved_data_dir)
        print(
            f"[sweep] storage {storage}: shared ({reason}); seen by {len(answers)} of "
            f"{len(info.trial_nodes)} nodes, each has the code and the data set",
            flush=True,
        )
    return info
