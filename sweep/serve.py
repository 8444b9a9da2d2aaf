"""TensorBoard and optuna-dashboard for a sweep, on 127.0.0.1, safe from other web pages.

    python -m sweep.serve tensorboard --logdir results [--host 127.0.0.1] [--port 6006]
    python -m sweep.serve optuna-dashboard results/default/optuna-journal.log [--port 8080]
    (both: [--allow-host NAME ...])

`make tensorboard` and `make optuna-dashboard` run these. Listening on 127.0.0.1 keeps other
machines out, but not other web pages in your own browser: with DNS rebinding a page on
evil.example makes its own name resolve to 127.0.0.1, and its scripts then read TensorBoard's
curves or change optuna-dashboard's studies as if they were that page's own server. Neither
server checks the Host header itself (TensorBoard 2.21, optuna-dashboard 0.21). So every
request first passes `HostCheck`:

- its Host header must name this server: 127.0.0.1, localhost, ::1, the address it listens on,
  any `--allow-host` NAME (e.g. a name in an SSH config), and, when it listens on 0.0.0.0 or
  ::, this machine's own host names and addresses; anything else gets 403;
- a request that changes something (POST, PUT, PATCH, DELETE) whose Origin header names
  another site gets 403 too (cross-site request forgery, e.g. a hidden form on a web page).

Served wider than 127.0.0.1 (`HOST=0.0.0.0`), anyone who reaches the port can still read,
and in optuna-dashboard change, the studies: neither server has logins. Use an SSH tunnel
(`ssh -L 6006:127.0.0.1:6006 host`) instead.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD = frozenset({"0.0.0.0", "::", ""})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def host_name(header: str) -> str:
    """The host of a Host header or of an Origin URL, without the port, lowercase."""
    text = header.strip().lower()
    if "://" in text:
        text = urlsplit(text).netloc
    if text.startswith("["):  # [::1]:6006
        return text[1 : text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def allowed_hosts(bind: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names a browser may use to reach a server listening on `bind`."""
    names = set(LOOPBACK) | {host_name(bind)} | {host_name(e) for e in extra}
    if bind in WILDCARD:  # served on every interface: this machine's names and addresses
        for name in {socket.gethostname(), socket.getfqdn()}:
            names.add(name.lower())
            try:
                names |= {info[4][0] for info in socket.getaddrinfo(name, None)}
            except OSError:
                pass
    return frozenset(n for n in names if n)


class HostCheck:
    """WSGI middleware: 403 for a Host this server is not, or a cross-site write."""

    def __init__(self, app: Callable[..., Any], allowed: frozenset[str]) -> None:
        self.app, self.allowed = app, allowed

    def problem(self, environ: dict[str, Any]) -> str | None:
        host = host_name(environ.get("HTTP_HOST") or environ.get("SERVER_NAME", ""))
        if host not in self.allowed:
            return f"Host '{host}' is not this server (DNS rebinding?)"
        origin = environ.get("HTTP_ORIGIN")
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if origin and method not in SAFE_METHODS and host_name(origin) not in self.allowed:
            return f"a {method} from the web page of '{host_name(origin)}' (cross-site)"
        return None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        problem = self.problem(environ)
        if problem is None:
            return self.app(environ, start_response)
        body = (
            f"403 Forbidden: {problem}. Open this server as http://127.0.0.1:<port>/, or "
            "start it with --allow-host NAME for the name you use.\n"
        ).encode()
        start_response(
            "403 Forbidden",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]


def warn_if_wide(host: str) -> None:
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: serving on {host}: anyone who can reach this machine's port can read "
            "(and, for optuna-dashboard, change) it; prefer an SSH tunnel to 127.0.0.1",
            file=sys.stderr,
        )


def serve_tensorboard(logdir: str, host: str, port: int, extra: list[str]) -> int:
    from tensorboard import program

    allowed = allowed_hosts(host, extra)

    def server(app: Callable[..., Any], flags: Any) -> Any:
        return program.WerkzeugServer(HostCheck(app, allowed), flags)

    tb = program.TensorBoard(server_class=server)
    tb.configure(argv=[None, "--logdir", logdir, "--host", host, "--port", str(port)])
    warn_if_wide(host)
    return int(tb.main() or 0)


def serve_optuna_dashboard(journal: str, host: str, port: int, extra: list[str]) -> int:
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIServer, make_server

    import optuna_dashboard
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    class Threaded(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    if not Path(journal).is_file():
        print(
            f"error: no Optuna journal at '{journal}'; a sweep writes it when its Optuna phase "
            "starts (make optuna-dashboard NAME=<sweep>, or JOURNAL=<path> for --journal)",
            file=sys.stderr,
        )
        return 2
    app = optuna_dashboard.wsgi(JournalStorage(JournalFileBackend(journal)))
    httpd = make_server(host, port, HostCheck(app, allowed_hosts(host, extra)), Threaded)
    warn_if_wide(host)
    print(f"optuna-dashboard of {journal} at http://{host}:{port}/ (Ctrl-C quits)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sweep.serve", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    tb = sub.add_parser("tensorboard", help="TensorBoard over a results folder")
    tb.add_argument("--logdir", required=True, help="results folder (e.g. results)")
    tb.add_argument("--port", type=int, default=6006)
    od = sub.add_parser("optuna-dashboard", help="optuna-dashboard over a sweep's journal")
    od.add_argument("journal", help="the Optuna journal (results/<name>/optuna-journal.log)")
    od.add_argument("--port", type=int, default=8080)
    for parser in (tb, od):
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
        parser.add_argument(
            "--allow-host",
            action="append",
            default=[],
            metavar="NAME",
            help="another name the browser may use for this server (repeatable)",
        )
    args = p.parse_args(argv)
    if args.what == "tensorboard":
        return serve_tensorboard(args.logdir, args.host, args.port, args.allow_host)
    return serve_optuna_dashboard(args.journal, args.host, args.port, args.allow_host)


if __name__ == "__main__":
    sys.exit(main())
