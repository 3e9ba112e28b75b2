"""Start the app under gunicorn with the production settings, on loopback, for benchmarks and
process-level tests.

    from _server import prepare_database, start_server
    prepare_database(url)                      # create the tables on a fresh database
    with start_server(database_url=url, workers=3, secret_key=KEY) as server:
        ...  # server.url == "http://127.0.0.1:<port>"
    # or: server = start_server(...); ...; server.stop()   (server.kill() = SIGKILL, a crash)

The server runs `emailexp.cli.gunicorn_argv(host, port, workers)` (what `emailexp serve` runs)
in its own process group with EMAILEXP_ENV=production; `app` swaps the WSGI target (e.g. a
baseline app). `start_server` returns once the server answers HTTP, and every server still
running is killed (the whole process group) when the Python process exits; the temporary
instance directories and log files it made are deleted then too (the log stays readable after
`stop()` until the process exits).
"""
from __future__ import annotations

import atexit
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
_running: set[ServerHandle] = set()
_temporary: list[Path] = []  # made by start_server; removed at exit


@dataclass(eq=False)
class ServerHandle:
    url: str
    port: int
    process: subprocess.Popen
    log_path: Path
    env: dict = field(repr=False, default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM to the process group), SIGKILL after `timeout` seconds."""
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait(timeout)
        self._reap()

    def kill(self) -> None:
        """SIGKILL the master and every worker at once: a crash, nothing gets to clean up."""
        self._signal(signal.SIGKILL)
        self.process.wait(10)
        self._reap()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _reap(self) -> None:
        # Workers may outlive the master for a moment after SIGKILL; make sure none survive.
        self._signal(signal.SIGKILL)
        _running.discard(self)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def prepare_database(database_url: str) -> None:
    """Create every table on an empty database (what `emailexp db upgrade` does for the tests)."""
    from emailexp import create_app
    from emailexp.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        db.create_all()
        db.engine.dispose()


def start_server(*, database_url: str, secret_key: str, port: int | None = None, workers: int | None = 2,
                 app: str = "wsgi:app", env: dict | None = None, pythonpath: list[str] | None = None,
                 ready_path: str = "/", timeout: float = 60.0, log_path: str | Path | None = None) -> ServerHandle:
    """Start gunicorn on 127.0.0.1 and wait until it answers an HTTP request for `ready_path`
    (any status counts). `env` adds or overrides environment variables of the server."""
    from emailexp.cli import gunicorn_argv

    port = port or free_port()
    argv = gunicorn_argv(HOST, port, workers)
    argv[-1] = app
    server_env = {k: v for k, v in os.environ.items() if not k.startswith(("EMAILEXP_", "GUNICORN_"))}
    server_env.update({
        "EMAILEXP_ENV": "production",
        "EMAILEXP_DATABASE_URL": database_url,
        "EMAILEXP_SECRET_KEY": secret_key,
        "EMAILEXP_PUBLIC_URL": f"http://{HOST}:{port}",
        "EMAILEXP_INSTANCE_PATH": _temp(tempfile.mkdtemp(prefix="emailexp-instance-")),
        "PYTHONUNBUFFERED": "1",
    })
    paths = [str(p) for p in (pythonpath or [])] + [str(ROOT)]
    if server_env.get("PYTHONPATH"):
        paths.append(server_env["PYTHONPATH"])
    server_env["PYTHONPATH"] = os.pathsep.join(paths)
    server_env.update(env or {})
    if log_path is None:
        fd, log_path = tempfile.mkstemp(prefix="emailexp-gunicorn-", suffix=".log")
        os.close(fd)
        _temp(log_path)
    log_path = Path(log_path)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, cwd=ROOT, env=server_env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    handle = ServerHandle(url=f"http://{HOST}:{port}", port=port, process=process, log_path=log_path,
                          env=server_env)
    _running.add(handle)
    try:
        _wait_ready(handle, ready_path, timeout)
    except BaseException:
        handle.kill()
        raise
    return handle


def _wait_ready(handle: ServerHandle, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not handle.alive():
            raise RuntimeError(f"gunicorn exited with {handle.process.returncode}:\n{handle.log()[-4000:]}")
        conn = http.client.HTTPConnection(HOST, handle.port, timeout=5)
        try:
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)
        finally:
            conn.close()
    raise TimeoutError(f"gunicorn did not answer within {timeout} s:\n{handle.log()[-4000:]}")


def _temp(path: str) -> str:
    _temporary.append(Path(path))
    return path


@atexit.register
def _kill_all() -> None:
    for handle in list(_running):
        handle.kill()
    while _temporary:
        path = _temporary.pop()
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def install_signal_handlers() -> None:
    """For scripts: on SIGTERM/SIGINT kill the servers before exiting (atexit alone does not run
    on an unhandled SIGTERM)."""
    def _on_signal(signum, frame):
        _kill_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
