"""The ``hf-llama`` target: transformers' LlamaForCausalLM (GQA, RoPE, RMSNorm, SwiGLU) declared as such
gets every decoder-only LM check, the differential one included, and passes them; declared with the
wrong architecture it fails the differential check."""

from dataclasses import replace

import pytest

pytest.importorskip("transformers")

from transformer_conformance.adapter import Capability
from transformer_conformance.api import run_audit
from transformer_conformance.registry import all_checks
from transformer_conformance.targets.hf_llama import LLAMA_ARCHITECTURE, HFLlamaAdapter, llama_config


@pytest.mark.claim(
    "lm.llama-equals-hf", "gqa.repeat-equivalence", "rotary.relative-dot-product", "mask.padding.invariance"
)
def test_hf_llama_passes_every_check_its_architecture_admits() -> None:
    report = run_audit([HFLlamaAdapter()], profile="ci", progress=False)
    admitted = {c.id for c in all_checks() if c.needs <= {Capability.DECODER_LM, Capability.LOSS}}
    got = {r.check: r.status for r in report.results if r.check in admitted}
    assert got and set(got.values()) == {"pass"}, got
    assert got["lm.reference"] == "pass"


class InterleavedDeclared(HFLlamaAdapter):
    """Llama declared with interleaved rotary pairs (it rotates half-split ones)."""

    name = "hf-llama-declared-interleaved"
    architecture = replace(LLAMA_ARCHITECTURE, rope_layout="interleaved")

    def build_lm(self, config, state, device, dtype):  # type: ignore[no-untyped-def]
        return super().build_lm(replace(config, arch=LLAMA_ARCHITECTURE), state, device, dtype)


@pytest.mark.claim("lm.llama-equals-hf", "rotary.layouts")
def test_a_wrong_declaration_fails_the_differential_check() -> None:
    report = run_audit([InterleavedDeclared()], profile="ci", progress=False, check=["lm.reference"])
    assert [r.status for r in report.results] == ["fail"]


@pytest.mark.claim("lm.llama-equals-hf")
def test_config_refuses_what_llama_cannot_be() -> None:
    from transformer_conformance.reference.config import TransformerConfig

    with pytest.raises(NotImplementedError, match="norm_placement"):
        llama_config(TransformerConfig.tiny(arch=LLAMA_ARCHITECTURE))
