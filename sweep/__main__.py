import sys

from sweep.stopping import exit_with  # standard library only: loads in a blink

try:
    from sweep.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python loads the sweep: nothing has started yet
    print("\n[sweep] interrupted (Ctrl-C) before it started; nothing was changed", file=sys.stderr)
    exit_with(130)

if __name__ == "__main__":
    exit_with(main())
