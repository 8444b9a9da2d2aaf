"""`python -m sweep`: validate the config, run the sweep on Ray Tune, then write the report.

    python -m sweep --config sweep/configs/default.yaml [--set key=value ...] [--name NAME]
        [--storage DIR] [--address HEAD:PORT] [--seed S] [--dry-run] [--resume | --fresh]
        [--no-report] [--shared-storage] [--journal PATH]

On a multi-node Ray cluster see docs/cluster.md: --storage must be shared by every node.

Exit codes: 0 done; 2 bad input, or the sweep cannot run as asked (it is running already, its
config changed): one line naming the problem and the fix, nothing changed; 130 (Ctrl-C) and
143 (SIGTERM): stopped, state saved, the same command resumes; 75: the disk filled up: free
space, then the same command resumes; 1: every trial failed, or a bug (a traceback).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from sweep import stopping
from sweep.cluster import use_token_if_available
from sweep.config import ConfigError, SweepConfig, load_config, with_overrides
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

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sweep", description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML sweep config")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted for nested, YAML value), repeatable",
    )
    p.add_argument("--name", help="sweep name = results subfolder (default: config's name)")
    p.add_argument("--storage", default="results", help="results folder (default results/)")
    p.add_argument("--address", default=None, help="Ray cluster head:port (default: local)")
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
    p.add_argument("--seed", type=int, default=None, help="one seed for the whole sweep")
    p.add_argument("--dry-run", action="store_true", help="print the trials and exit")
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
    try:
        cfg = load_config(args.config, args.set)
    except (UnicodeDecodeError, OSError) as err:
        why = "is not a text file" if isinstance(err, UnicodeDecodeError) else err.strerror
        raise ConfigError(
            f"config file '{args.config}' {why}; pass --config with a YAML file, e.g. "
            "sweep/configs/default.yaml"
        ) from None
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


def write_report(exp_dir: Path, metric: str) -> int:
    cmd = [
        sys.executable,
        "-m",
        "analysis.fit_rule",
        "--results",
        str(exp_dir),
        "--metric",
        metric,
    ]
    return subprocess.call(cmd)


def main(argv: list[str] | None = None) -> int:
    stopping.install()  # Ctrl-C and SIGTERM (Slurm, Kubernetes, kill) stop the sweep cleanly
    tighten_umask()  # the caller's umask, minus group/world write: never looser
    args = parse_args(argv)
    try:
        cfg = resolve_config(args)
        if args.dry_run:
            import torch

            from sweep.runner import dry_run

            print(dry_run(cfg, float(os.cpu_count() or 1), float(torch.cuda.device_count())))
            return 0
        preflight(cfg)
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
    report = ""
    if not args.no_report:
        try:
            ok = write_report(exp_dir, cfg.metric) == 0
        except (KeyboardInterrupt, Terminated):
            print(
                f"\n[sweep] the sweep is done; write its report with: python -m analysis.fit_rule "
                f"--results {exp_dir}",
                file=sys.stderr,
            )
            return EXIT_SIGTERM if stopping.stop_reason()[0] == "SIGTERM" else EXIT_SIGINT
        report = (
            f"report:      {exp_dir / 'report' / 'report.md'} (and report.html)\n"
            if ok
            else "report:      not written (see the error above)\n"
        )
    print(
        f"\nresults:     {exp_dir}\n{report}"
        f"tensorboard: make tensorboard STORAGE={args.storage}  "
        f"(or: tensorboard --logdir {exp_dir} --host 127.0.0.1)"
    )
    return 0
