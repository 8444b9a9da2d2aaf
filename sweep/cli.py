"""`python -m sweep`: validate the config, run the sweep on Ray Tune, then write the report.

    python -m sweep --config sweep/configs/default.yaml [--set key=value ...] [--name NAME]
        [--storage DIR] [--address HEAD:PORT] [--seed S] [--dry-run] [--resume | --fresh]
        [--no-report] [--shared-storage] [--journal PATH]

On a multi-node Ray cluster see docs/cluster.md: --storage must be shared by every node.

Bad input exits with code 2 and one line naming the problem and its fix, before Ray starts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from sweep.cluster import use_token_if_available
from sweep.config import ConfigError, SweepConfig, load_config, with_overrides
from sweep.failures import AllTrialsFailed
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
    cfg = load_config(args.config, args.set)
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
    os.umask(0o022)  # nothing the sweep writes (or Ray's workers, started from here) is
    # world-writable, whatever the caller's umask
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

        from sweep.runner import SweepInterrupted, run_sweep

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
    except SweepInterrupted as stop:
        print(str(stop), file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\n[sweep] interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    report = ""
    if not args.no_report:
        ok = write_report(exp_dir, cfg.metric) == 0
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
