"""The ``hf-bert``, ``hf-bart`` and ``hf-t5`` targets: transformers' encoder families declared as such get
every check their capabilities admit (none not-applicable), differential ones included, and pass them;
a wrong declaration (architecture or config fields) fails."""

from dataclasses import replace

import pytest
import torch

pytest.importorskip("transformers")

from transformer_conformance.api import run_audit
from transformer_conformance.registry import all_checks
from transformer_conformance.targets import hf_encoders as hfe


@pytest.mark.slow
@pytest.mark.claim(
    "encoder.bert-equals-hf",
    "encoder.model-bidirectional",
    "encoder.model-padding-invariance",
    "encdec.bart-equals-hf",
    "encdec.t5-equals-hf",
    "encdec.cache-padded-prompts",
)
@pytest.mark.parametrize("adapter", [hfe.HFBertAdapter, hfe.HFBartAdapter, hfe.HFT5Adapter])
def test_target_passes_every_check_its_capabilities_admit(adapter) -> None:
    target = adapter()
    report = run_audit([target], profile="ci", progress=False, in_process=True)
    admitted = {c.id for c in all_checks() if c.needs <= target.capabilities}
    got = {r.check: r.status for r in report.results if r.check in admitted}
    assert set(got) == admitted
    assert set(got.values()) == {"pass"}, {k: v for k, v in got.items() if v != "pass"}
    differential = {c.id for c in all_checks() if c.id in admitted and c.kind == "differential"}
    assert differential and all(got[c] == "pass" for c in differential)


class BartWithoutOffset(hfe.HFBartAdapter):
    """BART declared without its position offset of 2 (it reads rows p + 2)."""

    name = "hf-bart-declared-without-offset"
    architecture = replace(hfe.BART_ARCHITECTURE, position_offset=0)

    def build_encoder_decoder(self, config, state, device, dtype):  # type: ignore[no-untyped-def]
        arch = hfe.BART_ARCHITECTURE
        if state is not None:  # the reference's rows loaded from row 0 (and two spare rows at the end)
            state = {k: torch.cat([v, v[-2:]]) if "pos_embed" in k else v for k, v in state.items()}
        return super().build_encoder_decoder(replace(config, arch=arch), state, device, dtype)


class T5Scaled(hfe.HFT5Adapter):
    """T5 declared with the default 1/sqrt(d_head) score scale (it does not scale)."""

    name = "hf-t5-declared-scaled"
    architecture = replace(hfe.T5_ARCHITECTURE, attn_scale=None)

    def build_encoder_decoder(self, config, state, device, dtype):  # type: ignore[no-untyped-def]
        return super().build_encoder_decoder(replace(config, arch=hfe.T5_ARCHITECTURE), state, device, dtype)


@pytest.mark.claim("encdec.bart-equals-hf", "encdec.t5-equals-hf", "scoring.unscaled-t5")
@pytest.mark.parametrize("adapter", [BartWithoutOffset, T5Scaled])
def test_a_wrong_architecture_fails_the_differential_check(adapter) -> None:
    report = run_audit([adapter()], profile="ci", progress=False, in_process=True, check=["encdec.reference"])
    assert [r.status for r in report.results] == ["fail"]


class BertWithoutFields(hfe.HFBertAdapter):
    """BERT without its declared config fields: the checks ask for sinusoidal positions it cannot be."""

    name = "hf-bert-without-config-fields"
    config_fields = {}  # noqa: RUF012


@pytest.mark.claim("encoder.bert-equals-hf")
def test_config_fields_reach_the_checks() -> None:
    report = run_audit(
        [BertWithoutFields()], profile="ci", progress=False, in_process=True, check=["encoder.shape"]
    )
    assert [r.status for r in report.results] == ["fail"]
    assert "positional" in (report.results[0].message or "")
