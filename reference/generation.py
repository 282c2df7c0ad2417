"""Autoregressive generation: each new token is appended to the input and the model is run again.

``generate_lm`` continues a prompt with a ``DecoderOnlyLM``; ``generate_encdec`` translates a source
with an ``EncoderDecoder``, starting the target from BOS. Tokens are chosen by
``reference.sampling.sample_next`` (T = 0 greedy, else softmax(logits / T) with the given generator).
A sequence stops at its first EOS: every later position holds ``config.pad_id``. Generation ends when
every sequence has stopped or at the length limit, so the result may be shorter than the limit.

``use_cache=True`` feeds only the new token to ``model.step`` (the prompt goes in as one chunk);
``use_cache=False`` recomputes the whole prefix each step. Both give identical tokens (up to float
rounding deciding a near-tie, which float64 models make vanishingly unlikely). Generation runs under
``torch.no_grad`` and does not change the model's train/eval mode: call ``model.eval()`` first for
deterministic results with dropout.
"""

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from transformer_conformance.reference.checking import checked, require
from transformer_conformance.reference.model import DecoderOnlyLM, EncoderDecoder
from transformer_conformance.reference.sampling import sample_next


def _choose(
    logits: Tensor, finished: Tensor, temperature: float, generator: torch.Generator | None, pad_id: int
) -> Tensor:
    """Next token per sequence (``pad_id`` for sequences that already stopped)."""
    chosen = sample_next(logits, temperature=temperature, generator=generator)
    return torch.where(finished, torch.full_like(chosen, pad_id), chosen)


@checked
def generate_lm(
    model: DecoderOnlyLM,
    prompt: Int[Tensor, "batch prompt"],
    *,
    max_new_tokens: int,
    temperature: float | int = 0.0,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    prompt_pad: Bool[Tensor, "batch prompt"] | None = None,
) -> Int[Tensor, "batch total"]:
    """Continue ``prompt`` by up to ``max_new_tokens`` tokens; the result starts with the prompt unchanged.

    ``eos_id=None`` disables EOS stopping (only the length limit applies). ``prompt_pad`` (an extension
    of the documented signature; True = real token) allows left-padded prompts in one batch.
    Claims: decoding.autoregressive, decoding.prompt-continuation, decoding.stops-at-eos,
    kvcache.equals-recompute.
    """
    batch, prompt_len = prompt.shape
    require(prompt_len >= 1, "prompt", "at least one token per sequence", prompt_len)
    require(max_new_tokens >= 0, "max_new_tokens", "an integer >= 0", max_new_tokens)
    pad_id = model.config.pad_id
    ids = prompt
    pad = prompt_pad
    finished = torch.zeros(batch, dtype=torch.bool, device=prompt.device)
    with torch.no_grad():
        cache = model.new_cache(batch) if use_cache else None
        for step in range(max_new_tokens):
            if cache is None:
                logits = model(ids, pad)[:, -1]
            elif step == 0:
                logits = model.step(prompt, cache, prompt_pad)[:, -1]
            else:
                logits = model.step(ids[:, -1:], cache)[:, -1]
            chosen = _choose(logits, finished, float(temperature), generator, pad_id)
            ids = torch.cat([ids, chosen[:, None]], dim=1)
            if pad is not None:
                pad = torch.cat([pad, torch.ones_like(pad[:, :1])], dim=1)
            if eos_id is not None:
                finished = finished | (chosen == eos_id)
                if bool(finished.all()):
                    break
    return ids


@checked
def generate_encdec(
    model: EncoderDecoder,
    src: Int[Tensor, "batch src"],
    *,
    max_len: int,
    temperature: float | int = 0.0,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    src_pad: Bool[Tensor, "batch src"] | None = None,
) -> Int[Tensor, "batch total"]:
    """Encode ``src`` once, then decode from ``[BOS]`` for up to ``max_len`` tokens (``<= max_len + 1`` ids).

    Stops per sequence at ``config.eos_id``. ``src_pad`` (an extension of the documented signature)
    marks the real source tokens. Claims: decoding.starts-from-bos, decoding.autoregressive,
    decoding.stops-at-eos, kvcache.cross-computed-once, kvcache.equals-recompute.
    """
    require(max_len >= 0, "max_len", "an integer >= 0", max_len)
    config = model.config
    batch = src.shape[0]
    ys = torch.full((batch, 1), config.bos_id, dtype=src.dtype, device=src.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
    with torch.no_grad():
        memory = model.encode(src, src_pad)
        cache = model.new_cache(batch) if use_cache else None
        for _ in range(max_len):
            if cache is None:
                logits = model.decode(ys, memory, src_pad)[:, -1]
            else:
                logits = model.step(ys[:, -1:], memory, cache, src_pad)[:, -1]
            chosen = _choose(logits, finished, float(temperature), generator, config.pad_id)
            ys = torch.cat([ys, chosen[:, None]], dim=1)
            finished = finished | (chosen == config.eos_id)
            if bool(finished.all()):
                break
    return ys


__all__ = ["generate_encdec", "generate_lm"]
