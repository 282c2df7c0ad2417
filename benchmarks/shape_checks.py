"""Run-time shape checking: the same forward with the jaxtyping/beartype checks on and off.

Claims: none (a cost figure for the checks that guard every claim's inputs).

Switch: jaxtyping reads ``config.jaxtyping_disable`` on every call of a ``@jaxtyped`` function (when set,
the wrapper calls the undecorated function, so beartype is skipped too); ``JAXTYPING_DISABLE=1`` only
sets that flag at import. So both cases run in one process, interleaved round by round, toggled with
``jaxtyping.config.update("jaxtyping_disable", ...)``. The benchmark verifies this before timing: a
``@checked`` probe given a wrongly shaped tensor must raise ``TypeCheckError`` with checks on and must
not with checks off; otherwise it stops.

Model: ``reference.model.DecoderOnlyLM`` at the base size (d_model 512, 8 heads, d_ff 2048, 6 layers,
vocabulary 1000), eval mode, no grad, ``forward`` on ids [4, 512] (the target case). Two cases without a
target show where the fixed per-call cost of the checks shows: ``forward`` on ids [1, 16], and 16
token-by-token decoding steps on a fresh KV cache (batch 1), where every step makes about a hundred
checked calls on tiny tensors.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import jaxtyping
import torch
from jaxtyping import Float
from torch import Tensor

from benchmarks._timing import Row, Settings, interleaved, median

NAME = "shape-checks"
OVERHEAD_TARGET_PCT = 5.0


@contextmanager
def checks(enabled: bool) -> Iterator[None]:
    """Switch the jaxtyping/beartype layer for the duration of the block, restoring the old setting."""
    previous = bool(jaxtyping.config.jaxtyping_disable)
    jaxtyping.config.update("jaxtyping_disable", not enabled)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", previous)


def verify_switch() -> None:
    """Fail loudly unless the config flag switches the checks of ``@checked`` on and off at call time."""
    from transformer_conformance.reference.checking import checked

    @checked
    def probe(x: Float[Tensor, " n"]) -> Float[Tensor, " n"]:
        return x

    bad = torch.zeros(2, 3)
    with checks(True):
        try:
            probe(bad)
        except jaxtyping.TypeCheckError:
            pass
        else:
            raise RuntimeError("shape checks did not fire with jaxtyping_disable=False: cannot measure 'on'")
    with checks(False):
        try:
            probe(bad)
        except jaxtyping.TypeCheckError as exc:
            raise RuntimeError("jaxtyping_disable=True did not take effect at call time") from exc


def run(settings: Settings) -> list[Row]:
    """Overhead of the checks in percent of the unchecked call, per case."""
    from transformer_conformance.reference.config import TransformerConfig
    from transformer_conformance.reference.model import DecoderOnlyLM

    verify_switch()
    device = settings.device
    config = TransformerConfig.tiny() if settings.mode == "tiny" else TransformerConfig(vocab_size=1000)
    torch.manual_seed(settings.seed)
    model = DecoderOnlyLM(config).to(device).eval()

    def forward(batch: int, length: int) -> Callable[[], object]:
        ids = torch.randint(3, config.vocab_size, (batch, length), device=device)
        return lambda: model(ids)

    def decode(steps: int) -> Callable[[], object]:
        token = torch.full((1, 1), config.bos_id, dtype=torch.long, device=device)

        def run_steps() -> object:
            cache = model.new_cache(1)
            for _ in range(steps):
                logits = model.step(token, cache)
            return logits

        return run_steps

    cases: list[tuple[str, Callable[[], object], bool, int]]
    if settings.mode == "tiny":
        cases = [("forward B=2,L=8", forward(2, 8), True, 1), ("decode 4 steps", decode(4), False, 1)]
    else:
        cases = [
            ("forward B=4,L=512", forward(4, 512), True, settings.rounds(full=9, quick=3)),
            ("forward B=1,L=16", forward(1, 16), False, settings.rounds(full=41, quick=15)),
            ("decode 16 steps B=1", decode(16), False, settings.rounds(full=15, quick=7)),
        ]
    rows: list[Row] = []
    for case, call, has_target, rounds in cases:

        def on(call: Callable[[], object] = call) -> object:
            with checks(True), torch.no_grad():
                return call()

        def off(call: Callable[[], object] = call) -> object:
            with checks(False), torch.no_grad():
                return call()

        times = interleaved({"checks on": on, "checks off": off}, device, rounds)
        t_on, t_off = median(times["checks on"]), median(times["checks off"])
        overhead = (t_on / t_off - 1.0) * 100.0
        rows.append(
            Row(NAME, f"{case},d_model={config.d_model}", "overhead on vs off", overhead, "%",
                f"<= {OVERHEAD_TARGET_PCT:g}%" if has_target else "",
                overhead <= OVERHEAD_TARGET_PCT if has_target else None,
                f"on {t_on * 1e3:.2f} ms, off {t_off * 1e3:.2f} ms ({(t_on - t_off) * 1e3:+.2f} ms per call)",
                {"on_s": t_on, "off_s": t_off})
        )
    return rows
