"""The fork server that every target's worker process is forked from (stdlib only, no torch here).

``fork_server()`` starts, once per audit process, ``transformer_conformance.worker``'s server: it
imports torch and the suite (never a target), warms torch's kernels up single-threaded, and then
forks one fresh worker per request and reaps it. ``prestart()`` lets the command line start it
before its own imports, so the two processes import torch at the same time.
"""

import atexit
import os
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

#: How long the fork server may take to import torch and the suite (a loaded machine is slow).
SERVER_START_S = 180.0


class ForkServer:
    """A process that has imported torch and the suite, and forks one fresh worker per request."""

    def __init__(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        paths = [str(Path(p).resolve()) if p else os.getcwd() for p in sys.path]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        try:
            out: Any = sys.__stderr__.fileno() if sys.__stderr__ is not None else subprocess.DEVNULL
        except (OSError, ValueError):
            out = subprocess.DEVNULL
        code = "from transformer_conformance.worker import main; main()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(child.fileno())],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=out,
            env=env,
            start_new_session=True,
        )
        child.close()
        self.control = parent
        self.lock = threading.Lock()
        self.buffer = b""
        self.ready = False

    def _line(self, timeout: float) -> str:
        self.control.settimeout(timeout)
        try:
            while b"\n" not in self.buffer:
                data = self.control.recv(256)
                if not data:
                    raise RuntimeError(f"the worker fork server exited (code {self.process.poll()})")
                self.buffer += data
        finally:
            self.control.settimeout(None)
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    def _ensure_ready(self) -> None:
        if not self.ready:
            if self._line(SERVER_START_S) != "ready":
                raise RuntimeError("the worker fork server did not start")
            self.ready = True

    def alive(self) -> bool:
        """Whether the server process still runs."""
        return self.process.poll() is None

    def fork(self) -> tuple[int, Connection]:
        """A fresh worker: (pid, connection to it)."""
        with self.lock:
            self._ensure_ready()
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            socket.send_fds(self.control, [b"fork"], [theirs.fileno()])
            theirs.close()
            pid = int(self._line(60.0))
        return pid, Connection(mine.detach())

    def wait(self, pid: int) -> int:
        """The exit code of a worker (negative: the signal that ended it), once it has ended."""
        with self.lock:
            self.control.sendall(f"wait {pid}".encode())
            return int(self._line(60.0))

    def close(self) -> None:
        """Stop the server (it kills any worker still running)."""
        try:
            self.control.close()
        finally:
            if not self.ready:  # still importing: it has no worker yet, and nothing to finish
                self.process.kill()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_SERVER: ForkServer | None = None
_SERVER_LOCK = threading.Lock()


def fork_server() -> ForkServer:
    """The process-wide fork server, started on first use (workers are always fresh forks of it)."""
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None or not _SERVER.alive():
            _SERVER = ForkServer()
        return _SERVER


def prestart() -> None:
    """Start the fork server now, so its imports overlap with the audit's own start-up."""
    fork_server()


@atexit.register
def _shutdown() -> None:
    if _SERVER is not None:
        _SERVER.close()
