"""`python -m sweep`: validate the config, run the sweep on Ray Tune, then write the report.

    python -m sweep [--config NAME|FILE] [--set key=value ...] [--name NAME]
        [--storage DIR] [--address HEAD:PORT] [--seed S] [--dry-run] [--print-config]
        [--resume | --fresh] [--no-report] [--shared-storage] [--journal PATH] [--version]

`--config` takes a YAML file or the name of a bundled config (`mnist`, `smoke`, ...: the files
in sweep/configs, found in the installed package too); `--help` lists them. On a multi-node
Ray cluster see docs/cluster.md: --storage must be shared by every node.

Exit codes: 0 done (some trials may have failed: the closing line counts them and names the
most common cause); 2 bad input, or the sweep cannot run as asked (it is running already, its
config changed): one line naming the problem and the fix, nothing changed; 130 (Ctrl-C) and
143 (SIGTERM): stopped, state saved, the same command resumes; 75: the disk filled up: free
space, then the same command resumes; 1: every trial failed, or the report could not be
written (one line naming the cause), or a bug (a traceback).
"""

from __future__ import annotations

import argparse
import difflib
import importlib.resources
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import yaml

from sweep import stopping
from sweep.cluster import check_fits, local_nodes, resolve_address, use_token_if_available
from sweep.config import ConfigError, SweepConfig, budget_text, load_config, with_overrides
from sweep.failures import AllTrialsFailed
from sweep.owner import tighten_umask
from sweep.stopping import (
    EXIT_DISK_FULL,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    RESUME_HINT,
    DiskFull,
    SweepStopped,
    Terminated,
    disk_full,
)
from sweep.storage import Options, check_storage_arg

EXAMPLES = """\
examples:
  python -m sweep                                   the default sweep (make sweep)
  python -m sweep --config smoke --dry-run          list a bundled config's trials, run nothing
  python -m sweep --config mnist --set epochs=3     a bundled config, one key changed
  python -m sweep --config my.yaml --print-config   the resolved config as YAML (all keys)
  python -m sweep --address 10.0.0.1:6379 --storage /nfs/results   on a Ray cluster

exit codes: 0 done; 1 every trial failed, or no report; 2 bad input (one line, nothing
changed); 75 disk full; 130/143 stopped (the same command resumes). See README.md."""


def bundled_configs() -> dict[str, Path]:
    """{name: file} of the configs shipped in the package (sweep/configs/*.yaml)."""
    folder = importlib.resources.files("sweep") / "configs"
    return {Path(f.name).stem: Path(str(f)) for f in folder.iterdir() if f.name.endswith(".yaml")}


def config_path(value: str) -> Path:
    """A --config value as a file: an existing path, a bundled config's name (`mnist`,
    `mnist.yaml`), or a path that load_config then reports missing."""
    path = Path(value).expanduser()
    if path.exists():
        return path
    bundled = bundled_configs()
    name = path.name.removesuffix(".yaml").removesuffix(".yml")
    if len(path.parts) == 1 and name in bundled:
        return bundled[name]
    if len(path.parts) > 1 or path.suffix in (".yaml", ".yml"):
        return path  # a path: "config file '...' does not exist"
    close = difflib.get_close_matches(name, list(bundled), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(
        f"config '{value}' is neither a file nor a bundled config{hint}; bundled: "
        f"{', '.join(sorted(bundled))} (python -m sweep --help lists them)"
    )


def describe(cfg: SweepConfig) -> str:
    """One line about a config: what trains, over which batch sizes, how many trials."""
    what = cfg.trainable or f"{cfg.dataset} / {cfg.model}"
    n_b = len(cfg.batch_sizes)
    grid = n_b * len(cfg.grid.lr_multipliers) * len(cfg.grid.warmup_epochs) * cfg.seeds
    optuna = n_b * cfg.optuna.trials_per_batch_size
    confirm = n_b * cfg.confirm.top_k * cfg.confirm.seeds
    if cfg.design == "adaptive":
        sizes = cfg.search_batch_sizes
        return (
            f"{what} / {cfg.optimizer}; B {min(sizes)}-{max(sizes)} ({len(sizes)}); "
            f"{cfg.epochs} ep; {grid} grid + adaptive ({budget_text(cfg)})"
        )
    return (
        f"{what} / {cfg.optimizer}; B {min(cfg.batch_sizes)}-{max(cfg.batch_sizes)} ({n_b}); "
        f"{cfg.epochs} ep; {grid} + {optuna} + {confirm} trials"
    )


def config_list() -> str:
    lines = [
        "bundled configs (--config NAME): data / model / optimizer; batch sizes (how many);",
        "epochs; trials planned (grid + optuna + confirm). Every key of one, with its value:",
        "python -m sweep --config NAME --print-config",
    ]
    for name, path in sorted(bundled_configs().items()):
        try:
            text = describe(load_config(path))
        except ConfigError as err:  # e.g. a data set that needs a download: still listed
            text = str(err)
        lines.append(f"  {name:<10} {text}")
    return "\n".join(lines)


def version() -> str:
    from sweep.space import code_version

    return f"python -m sweep (lr-batch-sweep) {code_version()}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    words = sys.argv[1:] if argv is None else argv
    asks_help = any(w.startswith("--h") or w == "-h" for w in words)
    p = argparse.ArgumentParser(
        prog="python -m sweep",
        description=__doc__.split("\n")[0],
        epilog=f"{config_list()}\n\n{EXAMPLES}" if asks_help else None,  # loads every config
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the epilog as written
    )
    p.add_argument(
        "--config", default="default", help="bundled config name or YAML file (default: default)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted for nested, YAML value), repeatable",
    )
    p.add_argument("--name", help="sweep name = results subfolder (default: the config's name)")
    p.add_argument("--storage", default="results", help="results folder (default: results)")
    p.add_argument("--address", default=None, help="Ray cluster head:port (default: local Ray)")
    p.add_argument(
        "--shared-storage",
        action="store_true",
        help="every Ray node sees --storage at the same path (NFS etc.: detected)",
    )
    p.add_argument(
        "--journal",
        default=None,
        metavar="PATH",
        help="Optuna journal file (default: optuna-journal.log in the results)",
    )
    p.add_argument(
        "--seed", type=int, default=None, help="one seed for the whole sweep (default: config's)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the trials and exit")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (every key, after --set) as YAML and exit",
    )
    p.add_argument("--version", action="version", version=version())
    p.add_argument("--no-report", action="store_true", help="skip the analysis at the end")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="resume; error if nothing to")
    group.add_argument(
        "--fresh",
        action="store_true",
        help="start over; an earlier run of this name is moved aside",
    )
    return p.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> SweepConfig:
    cfg = load_config(config_path(args.config), args.set)
    if args.name:
        cfg = with_overrides(cfg, name=args.name)
    if args.seed is not None:
        cfg = with_overrides(cfg, seed=args.seed)
    return cfg


def preflight(cfg: SweepConfig) -> None:
    """Checks before Ray starts: the data set is on disk (or bundled), and the user's own
    model, data set or training function imports and works (sweep.preflight)."""
    from sweep.preflight import check

    check(cfg)


def print_config(cfg: SweepConfig, source: Path) -> str:
    """The resolved config as YAML that --config reads back to the same sweep."""
    head = f"# {source} with the command line's changes, every key (python -m sweep)\n"
    return head + yaml.safe_dump(asdict(cfg), sort_keys=False, default_flow_style=None)


def write_report(exp_dir: Path, metric: str) -> tuple[int, str]:
    """Run the analysis; (its exit code, the cause it names when it fails). Its output is
    passed on as it is."""
    cmd = [
        sys.executable,
        "-m",
        "analysis.fit_rule",
        "--results",
        str(exp_dir),
        "--metric",
        metric,
    ]
    proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True, errors="replace")
    sys.stderr.write(proc.stderr)
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    named = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    cause = (named or lines or [f"the analysis exited with code {proc.returncode}"])[-1]
    return proc.returncode, cause


def main(argv: list[str] | None = None) -> int:
    stopping.install()  # Ctrl-C and SIGTERM (Slurm, Kubernetes, kill) stop the sweep cleanly
    tighten_umask()  # the caller's umask, minus group/world write: never looser
    try:
        args = parse_args(argv)
        cfg = resolve_config(args)
        if args.print_config:
            print(print_config(cfg, config_path(args.config)), end="")
            return 0
        if args.dry_run:
            import torch

            from sweep.runner import dry_run

            print(dry_run(cfg, float(os.cpu_count() or 1), float(torch.cuda.device_count())))
            return 0
        preflight(cfg)
        if resolve_address(args.address) is None:  # a local Ray: this machine must fit a trial
            check_fits(cfg, local_nodes(), "this machine")
        use_token_if_available(args.address)  # before Ray is imported (sweep.runner)

        from sweep.runner import run_sweep

        mode = "resume" if args.resume else "fresh" if args.fresh else "auto"
        check_storage_arg(args.storage, args.journal)
        exp_dir = run_sweep(
            cfg,
            Path(args.storage),
            args.address or None,
            mode,
            Options(args.shared_storage, args.journal),
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except AllTrialsFailed as failed:
        print(f"error: {failed}", file=sys.stderr)
        return 1
    except SweepStopped as stop:
        print(str(stop), file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print(f"\n[sweep] interrupted (Ctrl-C); {RESUME_HINT}", file=sys.stderr)
        return EXIT_SIGINT
    except Terminated:
        print(f"\n[sweep] stopped (SIGTERM); {RESUME_HINT}", file=sys.stderr)
        return EXIT_SIGTERM
    except (DiskFull, Exception) as err:
        where = err.path if isinstance(err, DiskFull) else disk_full(err)
        if where is None:
            raise
        print(
            f"error: no space left on the device (writing {where or args.storage}); free space "
            f"there, then {RESUME_HINT} (finished trials are kept)",
            file=sys.stderr,
        )
        return EXIT_DISK_FULL
    report, cause = "", ""
    if not args.no_report:
        try:
            code, cause = write_report(exp_dir, cfg.metric)
        except (KeyboardInterrupt, Terminated):
            print(
                f"\n[sweep] the sweep is done; write its report with: python -m analysis.fit_rule "
                f"--results {exp_dir}",
                file=sys.stderr,
            )
            return EXIT_SIGTERM if stopping.stop_reason()[0] == "SIGTERM" else EXIT_SIGINT
        ok = code == 0
        report = (
            f"report:      {exp_dir / 'report' / 'report.md'} (and report.html, fit.json, "
            "trials.csv)\n"
            if ok
            else "report:      not written\n"
        )
        cause = "" if ok else cause
    print(
        f"\nresults:     {exp_dir}\n{report}"
        f"tensorboard: make tensorboard STORAGE={args.storage}  "
        f"(or: python -m sweep.serve tensorboard --logdir {exp_dir})",
        flush=True,
    )
    if cause:
        print(
            f"error: the trials ran, but no report could be written: {cause}; fix that, then "
            f"write it with: python -m analysis.fit_rule --results {exp_dir}",
            file=sys.stderr,
        )
        return 1
    return 0
