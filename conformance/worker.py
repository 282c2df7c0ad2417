"""The worker side of target isolation: a pristine fork server and the per-target worker loop.

``python -m transformer_conformance.worker FD`` is the *server*: it imports torch and the suite's
modules once (no target code), then forks one fresh worker per request and reaps it. A worker
builds one target's adapter and answers calls from the audit over its own socket: it decodes the
inputs (copies), runs the target under ``torch.no_grad()``, checks that the inputs were not modified
in place and that every returned tensor is a plain dense tensor, and sends the results back as
copies; anything else it returns (a model, a cache, a layer) stays here behind a numbered handle.
Nothing the target does here can reach the audit process: see ``transformer_conformance.isolation``.
"""

import contextlib
import ctypes
import inspect
import os
import pickle
import resource
import signal
import socket
import sys
import time
import traceback
import warnings
from multiprocessing.connection import Connection
from typing import Any

import torch
from torch import Tensor

from transformer_conformance.wire import GeneratorState, HandleRef, dumps, target_traceback, warning_lines

PLAIN = (int, float, bool, str, bytes, complex, type(None), torch.dtype, torch.device, torch.Size)
#: What the fork server imports before forking: torch and the suite itself (the oracle's modules
#: included, so a worker does not import them again), never a target.
PRELOAD = (
    "transformer_conformance.adapter",
    "transformer_conformance.context",
    "transformer_conformance.targets",
    "transformer_conformance.targets.reference",
    "transformer_conformance.reference.model",
    "transformer_conformance.reference.sampling",
    "transformer_conformance.reference.loss",
    "transformer_conformance.reference.generation",
)


class TargetProblem(Exception):
    """A failure of the target found by the worker (kind, message)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _vm_size() -> int:
    """This process's address-space size in bytes (from /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


#: The adapter's declarations, sent as plain values by ``Worker.describe`` (not as attributes).
DECLARATIONS = frozenset(
    {"name", "capabilities", "conventions", "capability_conventions", "architecture",
     "capability_architectures", "components", "config_fields"}
)  # fmt: skip


#: Adapter methods whose result is a handle (a model, a cache) even when it is a plain dict or list:
#: it stays in the worker, so a cache updated in place by ``step`` is the same object at every step.
HANDLE_RESULTS = frozenset(
    {"build_mha", "build_layer_norm", "build_ffn", "build_encoder_layer", "build_decoder_layer",
     "build_encoder_decoder", "build_encoder", "build_lm", "new_cache"}
)  # fmt: skip


def _source_file(adapter: Any) -> str | None:
    """The file defining the adapter's class (None for a built-in or dynamic class)."""
    try:
        return inspect.getsourcefile(type(adapter))
    except TypeError:
        return None


class Worker:
    """One target's adapter and the objects it handed out."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.handles: dict[int, Any] = {}
        self.next_id = 1
        self.memory_limit: int | None = None
        self.traced: dict[int, str] = {}  # module id -> type name, while a module trace is open
        self.trace_hook: Any = None

    # -- replies ------------------------------------------------------------------------------
    def send(self, message: Any) -> None:
        self.conn.send_bytes(dumps(message))

    def fail(self, kind: str, message: str, **extra: Any) -> None:
        self.send(("fail", kind, message, extra))

    # -- init -----------------------------------------------------------------------------------
    def init(self, spec: dict[str, Any]) -> None:
        """Build the adapter (factory name or pickled instance) and describe it."""
        from transformer_conformance.adapter import Adapter
        from transformer_conformance.targets import TargetError, resolve_target

        sys.path[:] = spec["sys_path"]
        if spec.get("threads"):
            torch.set_num_threads(int(spec["threads"]))
        if spec.get("memory_limit"):
            self.memory_limit = int(spec["memory_limit"])
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            soft = _vm_size() + self.memory_limit
            resource.setrlimit(
                resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard)
            )
        try:
            if spec.get("impl") is not None:
                adapter: Any = resolve_target(spec["impl"])
            else:
                adapter = pickle.loads(spec["adapter"])
            if not isinstance(adapter, Adapter):
                raise TargetError(f"expected an Adapter, got {type(adapter).__name__}")
            description = self.describe(adapter)
        except TargetError as exc:
            self.fail("usage", str(exc))
            return
        except BaseException as exc:
            self.fail_from(exc, "building the target")
            return
        self.handles[0] = adapter
        self.send(("ok", description))

    @staticmethod
    def describe(adapter: Any) -> dict[str, Any]:
        """What the audit needs to know about the adapter, as plain values."""
        from dataclasses import asdict

        from transformer_conformance.adapter import Capability, Conventions

        conventions = adapter.conventions
        if not isinstance(conventions, Conventions):
            raise TypeError(f"conventions must be a Conventions, got {type(conventions).__name__}")
        methods = sorted(
            name
            for name in dir(type(adapter))
            if not name.startswith("_") and callable(getattr(type(adapter), name))
        )
        attrs = {}
        for name in dir(adapter):
            if name.startswith("_") or name in methods or name in DECLARATIONS:
                continue
            value = getattr(adapter, name, None)
            if isinstance(value, PLAIN):
                attrs[name] = value
        architecture = adapter.architecture
        return {
            "name": str(adapter.name),
            "capabilities": sorted(Capability(c).value for c in adapter.capabilities),
            "conventions": asdict(conventions),
            "capability_conventions": {
                Capability(c).value: asdict(v) for c, v in dict(adapter.capability_conventions).items()
            },
            "architecture": None if architecture is None else asdict(architecture),
            "capability_architectures": {
                Capability(c).value: asdict(v) for c, v in dict(adapter.capability_architectures).items()
            },
            "config_fields": dict(adapter.config_fields),
            "components": {
                Capability(c).value: sorted(Capability(x).value for x in v)
                for c, v in dict(adapter.components).items()
            },
            "problems": [str(p) for p in adapter.declaration_problems()],
            "methods": methods,
            "attrs": attrs,
            "type": f"{type(adapter).__module__}.{type(adapter).__qualname__}",
            "source": _source_file(adapter),
        }

    def fail_from(self, exc: BaseException, doing: str) -> None:
        """Report an exception of the target with its kind."""
        if isinstance(exc, TargetProblem):
            self.fail(exc.kind, exc.message)
        elif isinstance(exc, SystemExit | KeyboardInterrupt | GeneratorExit):
            what = f"SystemExit({exc.code!r})" if isinstance(exc, SystemExit) else type(exc).__name__
            self.fail("exited", f"the target raised {what} while {doing}")
        elif self.memory_limit and (
            isinstance(exc, MemoryError)
            or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))
        ):
            self.fail(
                "memory-limit",
                f"the target ran out of its memory limit ({self.memory_limit / 2**20:g} MiB) while {doing}: "
                f"{type(exc).__name__}: {str(exc)[:300]}",
            )
        else:
            self.fail(
                "raised",
                f"{type(exc).__name__}: {exc}",
                exc_type=type(exc).__name__,
                exc_module=type(exc).__module__,
                traceback=target_traceback(exc),
            )

    # -- calls ----------------------------------------------------------------------------------
    def resolve(self, handle: int, path: tuple[str, ...]) -> Any:
        obj = self.handles[handle]
        for name in path:
            obj = getattr(obj, name)
        return obj

    def decode(self, value: Any, generators: list[torch.Generator], tensors: list[Tensor]) -> Any:
        """Resolve handles and generators in the decoded arguments; collect the input tensors."""
        if isinstance(value, Tensor):
            tensors.append(value)
            return value
        if isinstance(value, HandleRef):
            return self.resolve(value.id, value.path)
        if isinstance(value, GeneratorState):
            gen = torch.Generator(device=value.device)
            gen.set_state(value.state)
            generators.append(gen)
            return gen
        if type(value) in (tuple, list):
            return type(value)(self.decode(v, generators, tensors) for v in value)
        if type(value) is dict:
            return {k: self.decode(v, generators, tensors) for k, v in value.items()}
        return value

    def export(self, value: Any, where: str) -> Any:
        """Plain values and tensors by value (validated); any other object as a handle."""
        if isinstance(value, Tensor):
            if type(value) is not Tensor and not isinstance(value, torch.nn.Parameter):
                raise TargetProblem(
                    "not-plain-tensor",
                    f"{where} is a {type(value).__module__}.{type(value).__qualname__}, a torch.Tensor "
                    "subclass: a target must return plain tensors",
                )
            if value.is_meta or value.device.type == "meta":
                raise TargetProblem("not-plain-tensor", f"{where} is a meta tensor (it holds no values)")
            if value.layout != torch.strided:
                raise TargetProblem(
                    "not-plain-tensor", f"{where} has layout {value.layout}, expected a dense tensor"
                )
            return value.detach()
        if type(value) in PLAIN:
            return value
        if isinstance(value, tuple | list):  # (named tuples come back as plain tuples)
            items = [self.export(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return items if isinstance(value, list) else tuple(items)
        if type(value) is dict:
            return {k: self.export(v, f"{where}[{k!r}]") for k, v in value.items()}
        return self.keep(value)

    def keep(self, value: Any) -> HandleRef:
        """Keep ``value`` in this worker and hand the audit a reference to it."""
        ident = self.next_id
        self.next_id += 1
        self.handles[ident] = value
        return HandleRef(ident, type(value).__qualname__)

    def call(self, handle: int, path: tuple[str, ...], payload: bytes) -> None:
        generators: list[torch.Generator] = []
        tensors: list[Tensor] = []
        args, kwargs = pickle.loads(payload)
        args = self.decode(args, generators, tensors)
        kwargs = self.decode(kwargs, generators, tensors)
        fn = self.resolve(handle, path)
        snapshots = [(t, t.detach().clone()) for t in tensors]
        name = ".".join(path) or type(fn).__qualname__
        start = time.perf_counter()
        try:
            with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = fn(*args, **kwargs)
                if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
                    torch.cuda.synchronize()
        except BaseException as exc:
            self.fail_from(exc, f"in {name}")
            return
        raised_warnings = warning_lines(caught)
        elapsed = time.perf_counter() - start
        for i, (tensor, before) in enumerate(snapshots):
            if not _same(tensor, before):
                self.fail(
                    "mutated-input",
                    f"{name} modified its input tensor #{i + 1} (shape {tuple(before.shape)}, "
                    f"{str(before.dtype).removeprefix('torch.')}) in place",
                )
                return
        try:
            if path and path[-1] in HANDLE_RESULTS:
                value = self.keep(result)  # a model or a cache: it lives here, whatever its type
            else:
                value = self.export(result, f"the result of {name}")
        except TargetProblem as problem:
            self.fail(problem.kind, problem.message)
            return
        states = [g.get_state() for g in generators]
        self.send(("ok", value, elapsed, states, raised_warnings))

    def signature(self, handle: int, path: tuple[str, ...]) -> None:
        try:
            sig = inspect.signature(self.resolve(handle, path))
            params = [
                (p.name, int(p.kind), p.default is not inspect.Parameter.empty)
                for p in sig.parameters.values()
            ]
        except (TypeError, ValueError) as exc:
            self.fail("raised", f"{type(exc).__name__}: {exc}")
            return
        self.send(("ok", params, 0.0, []))

    def trace_modules(self, start: bool) -> None:
        """Open (``start``) or close a trace of the torch modules whose forward runs in this worker;
        closing replies with ``{id(module): type name}`` (used by structural checks such as
        ``encdec.encodes-once``, which must see the target's modules where they run)."""
        if self.trace_hook is not None:
            self.trace_hook.remove()
            self.trace_hook = None
        if start:
            self.traced = {}

            def hook(module: torch.nn.Module, args: Any, result: Any) -> None:
                self.traced[id(module)] = type(module).__qualname__

            self.trace_hook = torch.nn.modules.module.register_module_forward_hook(hook)
            self.send(("ok", None, 0.0, []))
        else:
            self.send(("ok", dict(self.traced), 0.0, []))

    def serve(self) -> None:
        """Answer requests until the audit says goodbye or goes away."""
        while True:
            try:
                message = pickle.loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                os._exit(0)
            op = message[0]
            if op == "init":
                self.init(message[1])
            elif op == "call":
                self.call(message[1], tuple(message[2]), message[3])
            elif op == "signature":
                self.signature(message[1], tuple(message[2]))
            elif op == "trace-modules":
                self.trace_modules(bool(message[1]))
            elif op == "release":
                for ident in message[1]:
                    self.handles.pop(ident, None)
            elif op == "bye":
                os._exit(0)


def _same(after: Tensor, before: Tensor) -> bool:
    """Bitwise equality (NaN equals NaN) of a tensor with its snapshot."""
    if after.shape != before.shape or after.dtype != before.dtype:
        return False
    if after.numel() == 0:
        return True
    a = after.detach().contiguous().reshape(-1).view(torch.uint8)
    b = before.contiguous().reshape(-1).view(torch.uint8)
    return bool(torch.equal(a, b))


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent (the server) dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _child(fd: int) -> None:
    os.setsid()  # its own process group: the audit kills the group (the target's children too)
    _die_with_parent()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the audit's to handle
    try:
        Worker(Connection(fd)).serve()
    except BaseException:
        traceback.print_exc()
        os._exit(70)
    os._exit(0)


def serve_forks(control: socket.socket) -> None:
    """The fork server: ``fork`` (with a socket fd) -> the child's pid; ``wait PID`` -> its status."""
    children: set[int] = set()
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, 64, 4)
        except OSError:
            data, fds = b"", []
        if not data:
            for pid in children:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            os._exit(0)
        words = data.decode().split()
        if words[0] == "fork":
            pid = os.fork()
            if pid == 0:
                control.close()
                _child(fds[0])
            os.close(fds[0])
            children.add(pid)
            control.sendall(f"{pid}\n".encode())
        elif words[0] == "wait":
            pid = int(words[1])
            try:
                _, status = os.waitpid(pid, 0)
                code = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                code = 0
            children.discard(pid)
            control.sendall(f"{code}\n".encode())


def warm_up() -> None:
    """Run torch's common CPU kernels once, single-threaded (so no thread pool exists to be forked):
    each forked worker then starts warm instead of paying torch's first-call costs again. Only torch
    and the oracle run here, never a target."""
    from torch import nn
    from torch.nn import functional as F

    from transformer_conformance.reference.config import TransformerConfig
    from transformer_conformance.reference.model import DecoderOnlyLM, EncoderDecoder

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = TransformerConfig.tiny()
    ids = torch.randint(3, cfg.vocab_size, (2, 4))
    keep = torch.ones(2, 4, dtype=torch.bool)
    x = torch.randn(2, 4, cfg.d_model)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            lm, ed = DecoderOnlyLM(cfg).eval(), EncoderDecoder(cfg).eval()
            lm(ids, keep)
            lm.step(ids[:, :2], lm.new_cache(2))
            ed(ids, ids, keep, keep)
            enc = nn.TransformerEncoderLayer(
                cfg.d_model, cfg.num_heads, cfg.d_ff, 0.0, batch_first=True
            ).eval()
            enc(x, src_key_padding_mask=~keep)
            dec = nn.TransformerDecoderLayer(
                cfg.d_model, cfg.num_heads, cfg.d_ff, 0.0, batch_first=True
            ).eval()
            dec(
                x,
                x,
                tgt_mask=nn.Transformer.generate_square_subsequent_mask(4),
                memory_key_padding_mask=~keep,
            )
            mha = nn.MultiheadAttention(cfg.d_model, cfg.num_heads, batch_first=True).eval()
            mha(x, x, x, key_padding_mask=~keep)
            q = x.view(2, 4, cfg.num_heads, -1).transpose(1, 2)
            F.scaled_dot_product_attention(q, q, q, is_causal=True)
            F.layer_norm(x, (cfg.d_model,))
            torch.multinomial(torch.softmax(x[:, 0].double(), -1), 1)
    torch.set_num_threads(threads)


def main() -> None:
    """Entry point of the fork server (arguments: the control socket's file descriptor, then the
    libraries to preload for the audit's targets, see ``forkserver.preload_for``)."""
    import importlib

    control = socket.socket(fileno=int(sys.argv[1]))
    for name in PRELOAD:
        importlib.import_module(name)
    for name in sys.argv[2:]:
        with contextlib.suppress(Exception):  # a library that fails here fails in its target, visibly
            importlib.import_module(name)
    with contextlib.suppress(Exception):  # a warm-up that fails only costs speed
        warm_up()
    control.sendall(b"ready\n")
    serve_forks(control)


if __name__ == "__main__":
    main()
