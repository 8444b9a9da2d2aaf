"""Local services (`python -m sweep.serve`): TensorBoard and optuna-dashboard refuse requests
whose Host header names another server (DNS rebinding) and cross-site writes.

The HostCheck rules on a plain WSGI app (fast), then a real optuna-dashboard over a real
Optuna journal; the real TensorBoard is checked in test_sweep_integration.py over a sweep's
results."""

import subprocess
import sys
import time
import urllib.error
import urllib.request

import optuna
import pytest
from conftest import ROOT, free_port
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from sweep.serve import HostCheck, allowed_hosts, host_name


def _app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _status(host: str, method: str = "GET", origin: str | None = None, bind="127.0.0.1"):
    environ = {"HTTP_HOST": host, "REQUEST_METHOD": method}
    if origin:
        environ["HTTP_ORIGIN"] = origin
    seen = []
    HostCheck(_app, allowed_hosts(bind, ["lab-box"]))(environ, lambda s, h: seen.append(s))
    return seen[0].split()[0]


@pytest.mark.parametrize(
    "host, status",
    [
        ("127.0.0.1:6006", "200"),
        ("localhost:6006", "200"),
        ("LOCALHOST", "200"),
        ("[::1]:6006", "200"),
        ("lab-box:6006", "200"),  # --allow-host lab-box
        ("evil.example:6006", "403"),  # a rebound name: the page's own, resolving to us
        ("127.0.0.1.evil.example", "403"),
        ("", "403"),
    ],
)
def test_the_host_header_must_name_this_server(host, status):
    assert _status(host) == status


def test_writes_from_another_sites_page_are_refused_reads_and_own_writes_are_not():
    assert _status("127.0.0.1:8080", "DELETE", origin="http://evil.example") == "403"
    assert _status("127.0.0.1:8080", "POST", origin="null") == "403"
    assert _status("127.0.0.1:8080", "POST", origin="http://127.0.0.1:8080") == "200"
    assert _status("127.0.0.1:8080", "POST") == "200"  # curl, scripts: no Origin
    assert _status("127.0.0.1:8080", "GET", origin="http://evil.example") == "200"


def test_served_on_every_interface_this_machines_names_are_allowed():
    import socket

    assert socket.gethostname().lower() in allowed_hosts("0.0.0.0")
    assert socket.gethostname().lower() not in allowed_hosts("127.0.0.1")
    assert host_name("http://[::1]:80") == "::1" and host_name("Example.org:1") == "example.org"


def _request(url: str, host: str, method: str = "GET", origin: str | None = None) -> int:
    req = urllib.request.Request(url, method=method, headers={"Host": host})
    if origin:
        req.add_header("Origin", origin)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.integration
def test_optuna_dashboard_refuses_a_rebound_host_and_a_cross_site_delete(tmp_path):
    journal = tmp_path / "optuna-journal.log"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="B8", storage=storage)
    study.optimize(lambda t: t.suggest_float("lr", 1e-3, 1.0, log=True), n_trials=3)
    port = free_port()
    cmd = [sys.executable, "-m", "sweep.serve", "optuna-dashboard", str(journal)]
    server = subprocess.Popen(
        [*cmd, "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    own = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while _ready(base, own) is False and time.time() < deadline:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            time.sleep(0.5)
        assert _request(f"{base}/api/studies", own) == 200
        assert _request(f"{base}/api/studies", f"localhost:{port}") == 200
        assert _request(f"{base}/api/studies", f"evil.example:{port}") == 403
        assert _request(f"{base}/", f"evil.example:{port}") == 403
        url = f"{base}/api/studies/{storage.get_study_id_from_name('B8')}"
        assert _request(url, own, "DELETE", origin="http://evil.example") == 403
        assert [s.study_name for s in storage.get_all_studies()] == ["B8"]  # still there
    finally:
        server.terminate()
        server.wait(timeout=30)


def _ready(base: str, host: str) -> bool:
    try:
        return _request(f"{base}/api/meta", host) == 200
    except OSError:
        return False


def test_a_missing_journal_is_one_line_and_exit_2(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "sweep.serve", "optuna-dashboard", str(tmp_path / "none.log")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: no Optuna journal at")
    assert not (tmp_path / "none.log").exists()  # not created by looking


def test_make_serves_both_through_the_host_check():
    makefile = (ROOT / "Makefile").read_text()
    assert "$(PY) -m sweep.serve tensorboard --logdir $(STORAGE) --host $(HOST)" in makefile
    assert "$(PY) -m sweep.serve optuna-dashboard --host $(HOST)" in makefile
