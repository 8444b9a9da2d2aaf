"""Scaling-law report of a sweep: does the best learning rate scale linearly or by sqrt(B)?

    python -m analysis.fit_rule --results DIR [--out DIR] [--json FILE] [--metric val_loss]
                                [--objective metric|steps_to_target] [--margin 0.2]
                                [--n-boot 200] [--seed 0]

--results  the folder Ray Tune wrote (`<storage>/<name>`, or a folder holding several such
           experiments); trial folders are found recursively by their `params.json`.
--out      where to write report.md, report.html (self-contained) and figures/*.png;
           default: `<results>/report`.
--json     where to write fit.json; default: `<out>/fit.json`.
--metric   final-epoch metric that defines "best": a loss is minimised, an accuracy (a name
           containing "acc") maximised. Default val_loss.
--objective  `metric` (default): best = final value of --metric. `steps_to_target`: best =
           fewest steps to the sweep's target (config `target:`; Shallue et al. 2018), trials
           that never reached it infeasible.
--margin   equivalence margin around alpha = 1 (linear) and 0.5 (sqrt), default 0.2: `linear`
           only when alpha's 95% interval lies inside [1 - margin, 1 + margin].
--n-boot   sweeps simulated on the design to calibrate the intervals (default 200; 0 skips
           the calibration and uses the chi-square intervals as they are).
--seed     random seed of those simulations.

When the trials report them, the report also holds the measured gradient noise scale
(`measure_noise_scale`) beside the fitted B_noise and the steps-to-target curve with its
regimes; for Adam it tests "no lr change" (alpha = 0), for any optimizer the surge shape.

Prints the best lr per batch size (with CI, edge flag, trial and divergence counts) and the
verdict paragraph. Bad input (missing or empty folder, no finished trial, unknown metric)
prints one line on stderr and exits with code 2; Ctrl-C prints one line and exits with 130
(the results are only read, so nothing is lost: run the same command again).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_SIGINT = 130  # the shell's code for a process stopped by Ctrl-C (as the sweep's)

try:
    from analysis.load import AnalysisError, error_exit
    from analysis.pipeline import Analysis, analyze
except KeyboardInterrupt:  # Ctrl-C while Python loads numpy, scipy, pandas: nothing started
    print(
        "\n[fit_rule] interrupted (Ctrl-C) before it started; nothing was written", file=sys.stderr
    )
    sys.exit(EXIT_SIGINT)


def console_table(a: Analysis) -> str:
    """The console summary: one line per batch size."""
    from analysis.content import ci_text

    head = f"{'B':>6} {'best lr':>10} {'95% CI':>23} {'edge':>5} {'trials':>7} {'diverged':>9}"
    lines = [head, "-" * len(head)]
    for _, r in a.best.iterrows():
        lr = "-" if r["lr"] is None or r["lr"] != r["lr"] else f"{r['lr']:.4g}"
        ci = ci_text(r["lr_ci_lo"], r["lr_ci_hi"])
        lines.append(
            f"{int(r['batch_size']):>6} {lr:>10} {ci:>23} {'EDGE' if r['at_edge'] else '':>5} "
            f"{int(r['n_trials']):>7} {int(r['n_diverged']):>9}"
        )
    return "\n".join(lines)


def summary_text(a: Analysis, written: dict[str, Path]) -> str:
    parts = [
        *a.load.lines(),
        "",
        f"Best lr per batch size (final {a.metric}, "
        f"{'maximised' if a.maximize else 'minimised'}):",
        console_table(a),
        "",
        f"VERDICT: {a.verdict.verdict}"
        + (f" (best rule: {a.inference.best_model})" if a.inference.best_model else ""),
        a.verdict.paragraph,
        a.verdict.linear_range,
        *a.verdict.notes,
        *extra_lines(a),
        "",
        f"Report: {written['report.html']} (and report.md, figures/); fit: {written['fit.json']}",
    ]
    return "\n".join(parts)


def extra_lines(a: Analysis) -> list[str]:
    """Optimizer, noise-scale and steps-to-target statements, when there are any."""
    from analysis.noise import comparison_text
    from analysis.optimizers import optimizer_text
    from analysis.steps import regimes_text

    lines = ["", optimizer_text(a.optimizer, a.best)]
    if a.no_change is not None:
        lines.append(f"NO LR CHANGE (alpha = 0): {a.no_change.text}")
    if a.noise is not None:
        lines.append(comparison_text(a.noise, a.inference.b_noise, a.inference.b_noise_ci))
    if a.steps is not None:
        lines.append(regimes_text(a.steps))
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m analysis.fit_rule",
        description="Scaling-law report: best lr per batch size, rule fits and verdict.",
    )
    p.add_argument("--results", required=True, type=Path, help="Ray Tune results folder")
    p.add_argument("--out", type=Path, default=None, help="report folder (default RESULTS/report)")
    p.add_argument("--json", type=Path, default=None, help="fit.json path (default OUT/fit.json)")
    p.add_argument("--metric", default="val_loss", help="val_loss (default), val_acc, ...")
    p.add_argument(
        "--objective",
        default="metric",
        choices=["metric", "steps_to_target"],
        help="rank trials by the final --metric (default) or by the fewest steps "
        "to the sweep's target",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.2,
        help="equivalence margin around alpha = 1 and 0.5 (default 0.2)",
    )
    p.add_argument(
        "--n-boot",
        type=int,
        default=200,
        help="simulated sweeps that calibrate the intervals (default 200)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of those simulations")
    args = p.parse_args(argv)
    if args.n_boot < 0:
        p.error("--n-boot must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or args.results / "report"
    writing = False
    try:
        a = analyze(
            args.results,
            metric=args.metric,
            n_boot=args.n_boot,
            seed=args.seed,
            objective=args.objective,
            margin=args.margin,
        )
        from analysis.report import write_report  # matplotlib only when there is a report

        writing = True
        written = write_report(a, out, args.json)
    except (AnalysisError, OSError) as exc:
        return error_exit(exc)
    except KeyboardInterrupt:  # the results are only read: nothing of them is lost
        done = f"the report in {out} may be incomplete" if writing else "no report was written"
        print(
            f"\n[fit_rule] interrupted (Ctrl-C); {done}: run the same command again",
            file=sys.stderr,
        )
        return EXIT_SIGINT
    print(summary_text(a, written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
