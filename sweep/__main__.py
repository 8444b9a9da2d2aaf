import sys

try:
    from sweep.cli import main
    from sweep.stopping import exit_with
except KeyboardInterrupt:  # Ctrl-C while Python loads the sweep: nothing has started yet
    print("\n[sweep] interrupted (Ctrl-C) before it started; nothing was changed", file=sys.stderr)
    exec("pass")  # noqa: S102 - as sweep.stopping.exit_with: exit 130, not killed by SIGINT
    raise SystemExit(130) from None

if __name__ == "__main__":
    exit_with(main())
