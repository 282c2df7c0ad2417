"""The README's example adapters must keep passing the built-in checks they declare (no rot),
and the checks must still have teeth against a planted bug in each example."""

import pytest
import torch

from transformer_conformance.api import run_audit
from transformer_conformance.examples import my_attention, my_lm
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.reference.tolerance import assert_close, assert_differs


@pytest.mark.claim("attention.formula")
def test_my_attention_passes_its_applicable_checks():
    report = run_audit([my_attention.make()], profile="quick", seed=1, progress=False)
    assert report.exit_code == 0, report.summary_text()
    assert sum(r.status == "pass" for r in report.results) >= 5


@pytest.mark.claim("mask.causal.future-blind", "kvcache.equals-recompute", "mask.padding.invariance")
def test_my_lm_passes_its_applicable_checks():
    report = run_audit([my_lm.make()], profile="quick", seed=1, progress=False)
    assert report.exit_code == 0, report.summary_text()
    assert sum(r.status == "pass" for r in report.results) >= 3
    assert {r.check: r.status for r in report.results}["lm.cache-with-padding"] == "pass"


@pytest.mark.claim("mask.padding.invariance", "kvcache.equals-recompute")
def test_my_lm_step_honours_the_pad_mask_of_earlier_chunks():
    """A padded prompt decoded on the recompute "cache" equals the full forward at real positions."""
    handle = my_lm.make().build_lm(_tiny(), None, torch.device("cpu"), torch.float32)
    ids = torch.tensor([[5, 6, 0, 0, 7, 8]])
    real = torch.tensor([[True, True, False, False, True, True]])
    full = handle.logits(ids, real)
    cache = handle.new_cache(1)
    prompt = handle.step(ids[:, :4], cache, real[:, :4])
    later = [handle.step(ids[:, t : t + 1], cache, real[:, t : t + 1]) for t in (4, 5)]
    got = torch.cat([prompt, *later], dim=1)
    assert_close(got[real], full[real].double(), "cached steps after a padded prompt")
    # and the padding really matters: without the mask the real positions after it move
    assert_differs(handle.logits(ids)[:, 4:], full[:, 4:], "logits with the padding unmasked")


def _tiny():
    return TransformerConfig.tiny()


@pytest.mark.claim("mask.causal.future-blind")
def test_planted_bug_in_my_attention_is_caught(monkeypatch):
    original = my_attention.my_attention

    def leaky(q, k, v, hide=None, causal=False):  # ignores the causal flag: sees the future
        return original(q, k, v, hide, False)

    monkeypatch.setattr(my_attention, "my_attention", leaky)
    # the planted bug is a monkeypatch of this process, which a worker process would not see
    report = run_audit(
        [my_attention.make()],
        profile="quick",
        seed=1,
        claims="mask.causal.*",
        progress=False,
        in_process=True,
    )
    assert report.exit_code == 1
    assert any(r.status == "fail" for r in report.results)


@pytest.mark.claim("mask.causal.future-blind")
def test_planted_bug_in_my_lm_is_caught(monkeypatch):
    def future_peeking_logits(self, ids, pad_mask=None):  # a bidirectional model posing as causal
        x = self.model.tok(ids) + self.model.pos(torch.arange(ids.shape[1]))
        visible = torch.ones(1, 1, ids.shape[1], ids.shape[1], dtype=torch.bool)
        for block in self.model.blocks:
            x = block(x, visible)
        return self.model.head(self.model.ln_f(x))

    monkeypatch.setattr(my_lm.TinyGPTHandle, "logits", future_peeking_logits)
    report = run_audit([my_lm.make()], profile="quick", seed=1, progress=False, in_process=True)
    assert report.exit_code == 1
