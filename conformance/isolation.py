"""The audit side of target isolation: each target runs in its own worker process.

The checks, the oracle and the report stay in the audit process. A :class:`TargetSession` owns one
target's worker, forked by a pristine fork server (``transformer_conformance.worker``, started once
per audit process; it has imported torch and the suite but never any target code). ``ctx.adapter``
is a :class:`RemoteAdapter`; every call on it (or on a handle it returned) crosses the boundary:
inputs go over as copies, results come back as plain tensors, other objects stay in the worker
behind :class:`RemoteObject` proxies. The worker's death, a timeout (the audit kills the worker's
process group, wherever the target is stuck, GIL held or not), an exit, an in-place modification of
an input, a tensor subclass or a meta tensor, or the memory limit becomes a failure of that check;
the next check gets a fresh worker.
"""

import contextlib
import inspect
import os
import pickle
import signal
import sys
import time
from collections.abc import Iterable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import torch

from transformer_conformance.adapter import Adapter, Capability, Conventions
from transformer_conformance.context import CheckFailure, FailureKind, TargetRaised
from transformer_conformance.forkserver import fork_server
from transformer_conformance.reference.architecture import Architecture
from transformer_conformance.wire import GeneratorState, HandleRef, dumps, safe_loads


class WorkerUsageError(ValueError):
    """The target cannot be built for a reason that is the caller's (no such module, not an Adapter)."""


def _signal_name(code: int) -> str:
    try:
        return f"signal {signal.Signals(-code).name} ({-code})"
    except ValueError:
        return f"signal {-code}"


def _exited(pid: int, grace_s: float) -> bool:
    """Whether ``pid`` has ended (a zombie counts), waiting up to ``grace_s``."""
    end = time.monotonic() + grace_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)


class TargetSession:
    """One target's worker process: started, described, called, restarted after a fatal failure."""

    def __init__(
        self,
        label: str,
        *,
        impl: str | None = None,
        adapter: Any = None,
        threads: int = 0,
        memory_limit: int | None = None,
    ) -> None:
        self.label = label
        self.spec: dict[str, Any] = {
            "impl": impl,
            "adapter": None if impl is not None else pickle.dumps(adapter),
            "threads": threads or torch.get_num_threads(),
            "memory_limit": memory_limit,
        }
        self.memory_limit = memory_limit
        self.pid: int | None = None
        self.conn: Connection | None = None
        self.generation = 0
        self.deadline = float("inf")
        self.limit_s = float("inf")
        self.fatal: CheckFailure | None = None
        self.target_time_s = 0.0
        self.warnings: list[str] = []  # what the target warned during this check (worker-side capture)
        self.created: list[int] = []
        self.description: dict[str, Any] | None = None
        self.adapter: RemoteAdapter | None = None

    # -- life cycle ------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        """Whether the worker can take calls."""
        return self.conn is not None and self.fatal is None

    def start(self, limit_s: float) -> "RemoteAdapter":
        """Fork a worker and build the target in it; raises ``CheckFailure`` (the target's failure
        while being built) or ``WorkerUsageError``."""
        self.stop()
        self.pid, self.conn = fork_server().fork()
        self.generation += 1
        self.fatal = None
        self.created = []
        self.limit_s = limit_s
        self.deadline = time.monotonic() + limit_s
        spec = {**self.spec, "sys_path": list(sys.path)}
        self._send(("init", spec))
        reply = self._receive("building the target")
        if reply[0] != "ok":
            _, kind, message, _extra = reply
            if kind == "usage":
                self.stop()
                raise WorkerUsageError(message)
            failure = _failure(kind, f"target {self.label!r}: {message}")
            self.fatal = failure
            self.stop()
            raise failure
        self.description = reply[1]
        self.label = str(reply[1]["name"])
        self.adapter = RemoteAdapter(self, reply[1])
        return self.adapter

    def stop(self) -> None:
        """End the worker: ask it to exit, then kill its process group (threads and children too)."""
        if self.conn is None or self.pid is None:
            return
        pid, conn = self.pid, self.conn
        self.conn = None
        with contextlib.suppress(OSError):
            conn.send_bytes(pickle.dumps(("bye",)))
        _exited(pid, 0.5)
        self._kill(pid)
        conn.close()
        fork_server().wait(pid)
        self.pid = None

    @staticmethod
    def _kill(pid: int) -> None:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)

    def begin_check(self, limit_s: float) -> None:
        """Start the clock of one check: every call must come back before ``limit_s`` from now."""
        self.limit_s = limit_s
        self.deadline = time.monotonic() + limit_s
        self.target_time_s = 0.0
        self.warnings = []

    def end_check(self) -> None:
        """Free the objects the check's calls left in the worker; a dead worker is cleaned up."""
        if self.fatal is not None:
            self.stop()
            return
        if self.created and self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.send_bytes(pickle.dumps(("release", self.created)))
        self.created = []

    # -- calls -----------------------------------------------------------------------------------
    def _send(self, message: Any) -> None:
        assert self.conn is not None
        with contextlib.suppress(OSError):  # the worker died: the reply read tells how
            self.conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def _die(self, failure: CheckFailure) -> CheckFailure:
        self.fatal = failure
        if self.pid is not None:
            self._kill(self.pid)
        return failure

    def _receive(self, doing: str) -> Any:
        assert self.conn is not None and self.pid is not None
        remaining = self.deadline - time.monotonic()
        if not self.conn.poll(max(0.0, remaining)):
            raise self._die(
                CheckFailure(
                    FailureKind.TIMEOUT,
                    f"check did not finish within the time limit of {self.limit_s:g} s (the target hung or "
                    f"is far too slow, {doing}); its worker was killed, the next check gets a new one",
                    allowed=self.limit_s,
                )
            )
        try:
            data = self.conn.recv_bytes()
        except (EOFError, OSError):
            data = None
        if data is None:
            pid = self.pid
            if not _exited(pid, 2.0):
                self._kill(pid)
            code = fork_server().wait(pid)
            self.pid = None
            self.conn.close()
            self.conn = None
            limit = f" (memory limit {self.memory_limit / 2**20:g} MiB)" if self.memory_limit else ""
            if code < 0:
                failure = CheckFailure(
                    FailureKind.CRASHED,
                    f"target {self.label!r}: its worker process was killed by {_signal_name(code)} "
                    f"{doing}{limit}",
                )
            else:
                failure = CheckFailure(
                    FailureKind.EXITED,
                    f"target {self.label!r}: its worker process exited with code {code} {doing} "
                    "(os._exit or a C-level exit in the target)",
                )
            self.fatal = failure
            raise failure
        try:
            return safe_loads(data)
        except Exception as exc:
            raise self._die(
                CheckFailure(
                    FailureKind.CRASHED, f"target {self.label!r}: unreadable reply from its worker ({exc})"
                )
            ) from None

    def _encode(self, args: Any, kwargs: Any, generators: list[torch.Generator]) -> bytes:
        def reduce(value: Any) -> Any:
            if isinstance(value, RemoteObject):
                if value._rt_session is not self or value._rt_generation != self.generation:
                    raise CheckFailure(
                        FailureKind.CRASHED,
                        f"target {self.label!r}: a handle from a worker process that has ended was used",
                    )
                return HandleRef, (value._rt_handle, value._rt_type, value._rt_path)
            if isinstance(value, torch.Generator):
                generators.append(value)
                return GeneratorState, (len(generators) - 1, str(value.device), value.get_state())
            return NotImplemented

        return dumps((args, kwargs), reduce)

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, HandleRef):
            self.created.append(value.id)
            return RemoteObject(self, value.id, (), value.type_name)
        if type(value) in (tuple, list):
            return type(value)(self._wrap(v) for v in value)
        if type(value) is dict:
            return {k: self._wrap(v) for k, v in value.items()}
        return value

    def call(self, handle: int, path: tuple[str, ...], args: Any, kwargs: Any, name: str) -> Any:
        """Run ``handle.path(*args, **kwargs)`` in the worker; failures raise ``CheckFailure``."""
        if self.fatal is not None or self.conn is None:
            dead = self.fatal or CheckFailure(FailureKind.CRASHED, f"target {self.label!r}: no worker")
            raise CheckFailure(dead.kind, dead.message, allowed=dead.allowed)
        generators: list[torch.Generator] = []
        payload = self._encode(args, kwargs, generators)
        self._send(("call", handle, path, payload))
        reply = self._receive(f"in {name}")
        if reply[0] == "ok":
            value, elapsed, states = reply[1:4]
            self.warnings.extend(str(w) for w in (reply[4] if len(reply) > 4 else ()))
            self.target_time_s += float(elapsed)
            for gen, state in zip(generators, states):
                gen.set_state(state)
            return self._wrap(value)
        _, kind, message, extra = reply
        if kind == "raised":
            cause = _rebuild_exception(extra.get("exc_type", ""), extra.get("exc_module", ""), message)
            raise TargetRaised(
                f"target {self.label!r}: {name} raised {message}", cause=cause, trace=extra.get("traceback")
            ) from cause
        raise _failure(kind, f"target {self.label!r}: {message}")

    def trace_modules(self, start: bool) -> dict[int, str]:
        """Open (``start``) or close the worker's trace of torch module calls; closing returns
        ``{module id: type name}`` of every module whose forward ran in the worker meanwhile."""
        if self.fatal is not None or self.conn is None:
            dead = self.fatal or CheckFailure(FailureKind.CRASHED, f"target {self.label!r}: no worker")
            raise CheckFailure(dead.kind, dead.message, allowed=dead.allowed)
        self._send(("trace-modules", start))
        reply = self._receive("tracing module calls")
        if reply[0] != "ok":
            raise _failure(reply[1], f"target {self.label!r}: {reply[2]}")
        return {int(k): str(v) for k, v in (reply[1] or {}).items()}

    def signature(self, handle: int, path: tuple[str, ...]) -> inspect.Signature:
        """The signature of a callable in the worker (parameter names and kinds only)."""
        self._send(("signature", handle, path))
        reply = self._receive("reading a signature")
        if reply[0] != "ok":
            raise TypeError(reply[2])
        params = [
            inspect.Parameter(n, inspect._ParameterKind(k), default=None if d else inspect.Parameter.empty)
            for n, k, d in reply[1]
        ]
        return inspect.Signature(params)


def _failure(kind: str, message: str) -> CheckFailure:
    known = {k.value: k for k in FailureKind}
    return CheckFailure(known.get(kind, FailureKind.RAISED), message)


def _rebuild_exception(type_name: str, module: str, message: str) -> BaseException:
    """The target's exception as seen by the audit: a builtin type is rebuilt, others are RemoteError."""
    import builtins

    text = message.partition(": ")[2] if ": " in message else message
    kind = getattr(builtins, type_name, None) if module == "builtins" else None
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(text)
        except Exception:
            pass
    return RemoteError(f"{module}.{type_name}: {text}")


class RemoteError(Exception):
    """An exception raised by the target in its worker, of a type the audit does not rebuild."""


class RemoteObject:
    """A callable (or an object with methods) that lives in the worker; calling it crosses over."""

    def __init__(self, session: TargetSession, handle: int, path: tuple[str, ...], type_name: str) -> None:
        self._rt_session = session
        self._rt_handle = handle
        self._rt_path = path
        self._rt_type = type_name
        self._rt_generation = session.generation
        self.__qualname__ = ".".join((type_name, *path)) if path else type_name
        self.__name__ = path[-1] if path else type_name

    def __getattr__(self, name: str) -> "RemoteObject":
        if name.startswith("__"):
            raise AttributeError(name)
        return RemoteObject(self._rt_session, self._rt_handle, (*self._rt_path, name), self._rt_type)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._rt_session.call(self._rt_handle, self._rt_path, args, kwargs, self.__qualname__)

    @property
    def __signature__(self) -> inspect.Signature:
        return self._rt_session.signature(self._rt_handle, self._rt_path)

    def __repr__(self) -> str:
        return f"<{self.__qualname__} in the worker of {self._rt_session.label!r}>"


def _conventions(fields: dict[str, Any]) -> Conventions:
    """A ``Conventions`` from the plain values a worker sent (tuples may arrive as lists)."""
    values = dict(fields)
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    return Conventions(**values)


class RemoteAdapter:
    """``ctx.adapter`` of an isolated target: its declarations as values, its methods as proxies."""

    def __init__(self, session: TargetSession, description: dict[str, Any]) -> None:
        self._session = session
        self.name: str = description["name"]
        self.capabilities = frozenset(Capability(c) for c in description["capabilities"])
        self.conventions = _conventions(description["conventions"])
        self.capability_conventions = {
            Capability(c): _conventions(v) for c, v in description.get("capability_conventions", {}).items()
        }
        arch = description.get("architecture")
        self.architecture = None if arch is None else Architecture(**arch)
        archs = description.get("capability_architectures", {})
        self.capability_architectures = {Capability(c): Architecture(**v) for c, v in archs.items()}
        self.config_fields: dict[str, Any] = dict(description.get("config_fields", {}))
        self.components = {
            Capability(c): frozenset(Capability(x) for x in v)
            for c, v in description.get("components", {}).items()
        }
        self._problems: list[str] = list(description["problems"])
        self._methods = set(description["methods"])
        self._attrs: dict[str, Any] = dict(description["attrs"])
        self.type_name: str = description["type"]
        self.source: str | None = description.get("source")

    def conventions_for(self, capabilities: Capability | Iterable[Capability] | None = None) -> Conventions:
        """As ``Adapter.conventions_for``, on the declarations the worker sent."""
        return Adapter.conventions_for(cast(Adapter, self), capabilities)

    def architecture_for(self, capabilities: Capability | Iterable[Capability] | None = None) -> Architecture:
        """As ``Adapter.architecture_for``, on the declarations the worker sent."""
        return Adapter.architecture_for(cast(Adapter, self), capabilities)

    def built_from(self, capability: Capability) -> frozenset[Capability]:
        """As ``Adapter.built_from``, on the declarations the worker sent."""
        return Adapter.built_from(cast(Adapter, self), capability)

    def declaration_problems(self) -> list[str]:
        """As ``Adapter.declaration_problems``, computed in the worker."""
        return list(self._problems)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._methods:
            return RemoteObject(self._session, 0, (name,), self.type_name.rsplit(".", 1)[-1])
        if name in self._attrs:
            return self._attrs[name]
        raise AttributeError(f"target {self.name!r} has no attribute {name!r}")
