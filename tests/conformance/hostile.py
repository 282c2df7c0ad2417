"""Hostile fake targets: each one attacks the audit itself rather than computing attention wrongly.

They exit the process, crash it, hang (in Python and in C with the GIL held), leave threads behind,
change directory, patch the oracle and the tolerance policy, modify their inputs, or return tensors
that are not plain. Used by test_isolation.py with ``fakes.REGISTRY`` (``dummy.attention`` compares
with ``fakes.softmax_attention`` through ``reference.tolerance``).
"""

import os
import re
import signal
import sys
import tempfile
import threading
import time

import torch
from torch import Tensor

from transformer_conformance.adapter import Adapter

from . import fakes


class _Hostile(fakes.GoodAdapter):
    """Correct attention once ``attack`` returns normally."""

    def attack(self, q: Tensor, k: Tensor, v: Tensor) -> None:
        raise NotImplementedError

    def attention(self, q, k, v, *, mask, is_causal):
        self.attack(q, k, v)
        return fakes.softmax_attention(q, k, v)


class ExitZero(_Hostile):
    name = "hostile-exit-0"

    def attack(self, q, k, v):
        os._exit(0)


class ExitThree(_Hostile):
    name = "hostile-exit-3"

    def attack(self, q, k, v):
        os._exit(3)


class Segfault(_Hostile):
    name = "hostile-segfault"

    def attack(self, q, k, v):
        os.kill(os.getpid(), signal.SIGSEGV)


class RaisesSystemExit(_Hostile):
    name = "hostile-system-exit"

    def attack(self, q, k, v):
        sys.exit(0)


class RaisesKeyboardInterrupt(_Hostile):
    name = "hostile-keyboard-interrupt"

    def attack(self, q, k, v):
        raise KeyboardInterrupt


class PythonHang(_Hostile):
    name = "hostile-python-hang"

    def attack(self, q, k, v):
        while True:
            pass


class GilHoldingHang(_Hostile):
    """Catastrophic backtracking in the C regex engine, which never releases the GIL (2^60 steps)."""

    name = "hostile-gil-hang"

    def attack(self, q, k, v):
        re.match(r"(a+)+$", "a" * 60 + "b")


def _sleep_forever() -> None:
    while True:
        time.sleep(3600)


class NonDaemonThread(_Hostile):
    """Correct, but leaves a non-daemon thread that never ends."""

    name = "hostile-non-daemon-thread"

    def attack(self, q, k, v):
        threading.Thread(target=_sleep_forever, daemon=False).start()


class ChangesDirectory(_Hostile):
    """Correct, but moves the process to another directory first."""

    name = "hostile-chdir"

    def attack(self, q, k, v):
        os.chdir(tempfile.mkdtemp(prefix="hostile-chdir-"))


class PatchesTheOracle(fakes.GoodAdapter):
    """Wrong output (doubled), after patching the oracle and the tolerance policy to agree with it."""

    name = "hostile-patches-oracle"

    def attention(self, q, k, v, *, mask, is_causal):
        from transformer_conformance import context
        from transformer_conformance.reference import tolerance

        original = fakes.softmax_attention

        def doubled(q, k, v):
            out, weights = original(q, k, v)
            return out * 2, weights

        fakes.softmax_attention = doubled
        always_ok = tolerance.direct(torch.zeros(1), torch.zeros(1, dtype=torch.float64))
        tolerance.differential = lambda *args, **kwargs: always_ok
        tolerance.direct = lambda *args, **kwargs: always_ok
        context.tolerance = tolerance
        return doubled(q, k, v)


class MutatesInput(fakes.GoodAdapter):
    """Scales q in place, so an oracle computed from the same q afterwards would agree."""

    name = "hostile-mutates-input"

    def attention(self, q, k, v, *, mask, is_causal):
        q.mul_(2.0)
        return fakes.softmax_attention(q, k, v)


class Sneaky(torch.Tensor):
    """A tensor subclass whose differences are always zero."""

    def __sub__(self, other):
        return torch.zeros_like(torch.Tensor(self))


class ReturnsSubclass(fakes.GoodAdapter):
    name = "hostile-tensor-subclass"

    def attention(self, q, k, v, *, mask, is_causal):
        out, weights = fakes.softmax_attention(q, k, v)
        return (out * 3).as_subclass(Sneaky), weights


class ReturnsMeta(fakes.GoodAdapter):
    name = "hostile-meta-tensor"

    def attention(self, q, k, v, *, mask, is_causal):
        out, weights = fakes.softmax_attention(q, k, v)
        return torch.empty(out.shape, dtype=out.dtype, device="meta"), weights


class HugeAllocation(_Hostile):
    """Asks for 64 GiB."""

    name = "hostile-huge-allocation"

    def attack(self, q, k, v):
        torch.ones(2**34, dtype=torch.float32)


def make_exit_zero() -> Adapter:
    return ExitZero()


def make_factory_exit() -> Adapter:
    """A factory that ends the process before any check runs."""
    sys.exit(0)


def make_non_daemon_thread() -> Adapter:
    return NonDaemonThread()


def make_chdir() -> Adapter:
    return ChangesDirectory()
