"""The per-model-type data of the generic ``hf-causal-lm:<model_type>`` target
(``conformance/targets/hf_causal_lm_types.toml``): every entry has a reason and names a causal-LM model
type of the installed transformers; every override is needed (without it the type fails to build or to
run a forward) and is right (with it the type builds; a wrong value fails); every not-built type really
fails to build; not-built and not-driven types are refused by the target factory and skipped by the
sweep with their reason."""

import re
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("transformers")

import transformers
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from benchmarks import hf_model_table
from transformer_conformance.reference.config import TransformerConfig
from transformer_conformance.targets import TargetError, hf_causal_lm
from transformer_conformance.targets.hf_causal_lm import (
    NOT_BUILT,
    NOT_DRIVEN,
    TYPE_OVERRIDES,
    TYPES_FILE,
    load_types,
)

#: Not-built types whose build is not tried here (it takes more than a minute: the reason says so).
SLOW_TO_FAIL = {"blt"}


def build_and_forward(model_type: str) -> None:
    """Build ``model_type`` tiny and run one forward; raise when it cannot (or keeps a huge vocabulary)."""
    tiny = TransformerConfig.tiny()
    model, _ = hf_causal_lm.build_causal_lm(model_type, tiny, torch.device("cpu"), torch.float32)
    handle = hf_causal_lm.CausalLMHandle(model, model_type in hf_causal_lm.CHUNK_MASK_TYPES)
    logits = handle.logits(torch.ones(2, 4, dtype=torch.long))
    if logits.shape[-1] != tiny.vocab_size:
        raise ValueError(f"vocabulary not shrunk: logits {tuple(logits.shape)}")


@pytest.mark.claim("sizes.base")
def test_every_entry_has_a_reason_and_names_a_causal_lm_model_type() -> None:
    entries = {**{t: o.reason for t, o in TYPE_OVERRIDES.items()}, **NOT_BUILT, **NOT_DRIVEN}
    assert len(entries) == len(TYPE_OVERRIDES) + len(NOT_BUILT) + len(NOT_DRIVEN)  # one section each
    for model_type, reason in entries.items():
        assert model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, model_type
        assert len(reason.split()) >= 5, (model_type, reason)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[override.gptj]\nset = { rotary_dim = 4 }\n', "has no reason"),
        ('[not_built.gptj]\nreason = " "\n', "has no reason"),
        ('[override.gptj]\nreason = "r"\n', "sets nothing"),
        ('[not_built.gptj]\nreason = "r"\n[not_driven.gptj]\nreason = "r"\n', "in both"),
        ('[skip.gptj]\nreason = "r"\n', "unknown sections"),
    ],
)
def test_a_malformed_types_file_is_refused(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "types.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=error):
        load_types(path)


def test_the_shipped_file_loads_into_the_module_tables() -> None:
    overrides, not_built, not_driven = load_types(TYPES_FILE)
    assert (overrides, not_built, not_driven) == (TYPE_OVERRIDES, NOT_BUILT, NOT_DRIVEN)


@pytest.mark.claim("sizes.base")
@pytest.mark.parametrize("model_type", sorted(TYPE_OVERRIDES))
def test_every_override_is_needed_and_names_fields_of_the_config(
    model_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the override the type builds and runs; without it the build or forward fails (unless the
    override only keeps the sweep within its time cap); every overridden field exists on the config."""
    override = TYPE_OVERRIDES[model_type]
    default = hf_causal_lm.model_class(model_type).config_class()
    assert [k for k in override.values if not hasattr(default, k)] == []
    for name, value in override.values.items():  # a sub-config's fields too, unless the reason names one
        if isinstance(value, dict):  # that its defaults lack (DBRX's attention rope_theta)
            sub = getattr(default, name)
            missing = [k for k in value if not hasattr(sub, k) and k not in override.reason]
            assert missing == [], (model_type, name)
    build_and_forward(model_type)
    if TYPE_OVERRIDES[model_type].for_time:
        return
    monkeypatch.delitem(TYPE_OVERRIDES, model_type)
    with pytest.raises(Exception):  # noqa: B017 -- whatever transformers raises for the unshrunk field
        build_and_forward(model_type)


@pytest.mark.parametrize(
    ("model_type", "wrong"),
    [
        ("codegen", {"rotary_dim": 64}),  # wider than the head width 8
        ("mamba2", {"num_heads": 4}),  # hidden * expand != num_heads * head_dim
        ("xmod", {"default_language": "de_DE"}),  # not one of its languages
    ],
)
def test_a_wrong_override_fails_the_build(
    model_type: str, wrong: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = TYPE_OVERRIDES[model_type]
    bad = hf_causal_lm.Override({**good.values, **wrong}, good.reason)
    monkeypatch.setitem(TYPE_OVERRIDES, model_type, bad)
    with pytest.raises(Exception):  # noqa: B017
        build_and_forward(model_type)


@pytest.mark.parametrize("model_type", sorted(set(NOT_BUILT) - SLOW_TO_FAIL))
def test_every_not_built_type_really_fails_to_build(model_type: str) -> None:
    """A stale entry (a type that builds now) fails here: then audit it instead."""
    with pytest.raises(Exception):  # noqa: B017
        build_and_forward(model_type)


@pytest.mark.parametrize("model_type", [*sorted(NOT_BUILT)[:1], *sorted(NOT_DRIVEN)[:1]])
def test_not_built_and_not_driven_types_are_refused_and_skipped_with_the_reason(model_type: str) -> None:
    reason = NOT_BUILT.get(model_type) or NOT_DRIVEN[model_type]
    with pytest.raises(TargetError, match=re.escape(reason)):
        hf_causal_lm.make(model_type)
    row = hf_model_table.worker(model_type)
    assert row["skipped"].endswith(reason) and "results" not in row


def test_the_readme_table_lists_every_causal_lm_model_type() -> None:
    """The table ``make hf-table`` wrote names every model type once: audited or with a reason."""
    text = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    table = text[text.index(hf_model_table.START) : text.index(hf_model_table.END)]
    listed = re.findall(r"^(?:\| |- )`([^`]+)`", table, flags=re.M)
    written_for = re.search(r"model types of transformers (\S+?) \(", table)
    assert written_for is not None, "the table does not say which transformers it was written for"
    stale = (
        f"the README table was written for transformers {written_for.group(1)}, this is "
        f"{transformers.__version__}: install the pinned one (constraints.txt) or rerun make hf-table"
    )
    assert sorted(listed) == sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES), stale


@pytest.mark.claim("sizes.base")
def test_composites_shrink_the_config_class_of_their_causal_lm_class() -> None:
    """Llama 4's causal-LM class takes its text config: that is what is built and shrunk."""
    config = hf_causal_lm.tiny_config("llama4", vocab_size=23)
    assert type(config).__name__ == "Llama4TextConfig" and config.hidden_size == 32


@pytest.mark.claim("sizes.base")
def test_per_layer_sizes_of_a_heterogeneous_config_scale_with_the_global_ones() -> None:
    """Gemma 4: full-attention layers have twice the head width (512 of 256): 16 of 8 at tiny size."""
    config = hf_causal_lm.tiny_config("gemma4_text", vocab_size=23)
    layers = config.per_layer_config
    assert len(layers) == config.num_hidden_layers
    widths: dict[str, set[int]] = {}
    for layer, kind in zip(layers, config.layer_types, strict=True):
        widths.setdefault(kind, set()).add(layer.head_dim)
    assert widths == {"sliding_attention": {8}, "full_attention": {16}}
