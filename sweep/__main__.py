import sys

try:
    from sweep.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python loads the sweep: nothing has started yet
    print("\n[sweep] interrupted (Ctrl-C) before it started; nothing was changed", file=sys.stderr)
    raise SystemExit(130) from None

if __name__ == "__main__":
    raise SystemExit(main())
