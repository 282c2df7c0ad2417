"""The fork server that every target's worker process is forked from (stdlib only, no torch here).

``fork_server()`` starts, once per audit process, ``transformer_conformance.worker``'s server: it
imports torch and the suite (never a target), warms torch's kernels up single-threaded, and then
forks one fresh worker per request and reaps it. ``prestart()`` lets the command line start it
before its own imports, so the two processes import torch at the same time.

A target's own dependencies are the target's business, with one exception for speed: when the audit
names a built-in Hugging Face target (``hf-*``), the server also imports ``transformers`` (offline,
``HF_HUB_OFFLINE=1``) before forking (``preload_for``), since each worker would otherwise pay about
2 s for it. That imports the library only, never a target module; a library that fails to import is
skipped, and the target then reports its own import error.
"""

import atexit
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

#: How long the fork server may take to import torch and the suite (a loaded machine is slow).
SERVER_START_S = 180.0

#: Libraries the server imports before forking when the audit names a target with this name prefix.
LIBRARY_PRELOADS: dict[str, tuple[str, ...]] = {
    "hf-": ("transformers", "transformers.modeling_utils", "transformers.generation"),
}


def preload_for(targets: Iterable[str]) -> tuple[str, ...]:
    """The libraries to import in the fork server for an audit of these target names (in order)."""
    wanted: dict[str, None] = {}
    for name in targets:
        for prefix, modules in LIBRARY_PRELOADS.items():
            if name.strip().startswith(prefix):
                wanted.update(dict.fromkeys(modules))
    return tuple(wanted)


def targets_in_argv(argv: list[str]) -> list[str]:
    """The target names of ``run --impl A,B`` (or ``--impl=A,B``) in a command line, before parsing."""
    names: list[str] = []
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--impl" and i + 1 < len(argv) else None
        if arg.startswith("--impl="):
            value = arg.partition("=")[2]
        if value is not None:
            names.extend(part for part in value.split(",") if part.strip())
    return names


class ForkServer:
    """A process that has imported torch and the suite, and forks one fresh worker per request."""

    def __init__(self, preload: tuple[str, ...] = ()) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        paths = [str(Path(p).resolve()) if p else os.getcwd() for p in sys.path]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        if preload:  # nothing may download at run time: the preloaded libraries start offline
            env.setdefault("HF_HUB_OFFLINE", "1")
            env.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            out: Any = sys.__stderr__.fileno() if sys.__stderr__ is not None else subprocess.DEVNULL
        except (OSError, ValueError):
            out = subprocess.DEVNULL
        code = "from transformer_conformance.worker import main; main()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(child.fileno()), *preload],
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


def fork_server(preload: tuple[str, ...] = ()) -> ForkServer:
    """The process-wide fork server, started on first use (workers are always fresh forks of it);
    ``preload`` (libraries to import before forking) applies only when this call starts it."""
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None or not _SERVER.alive():
            _SERVER = ForkServer(preload)
        return _SERVER


def prestart(targets: Iterable[str] = ()) -> None:
    """Start the fork server now, so its imports overlap with the audit's own start-up; the target
    names choose the libraries it preloads (``preload_for``)."""
    fork_server(preload_for(targets))


@atexit.register
def _shutdown() -> None:
    if _SERVER is not None:
        _SERVER.close()
