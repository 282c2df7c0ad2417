"""Helpers for checks whose inputs or oracle depend on what a target declares (not a check module).

``require_notes_scoring``: the checks judged against the notes' attention formula (softmax(q k^T /
sqrt(d_k)) v with the mask) are not-applicable to an attention that declares another scoring -- a
position bias (``positions="alibi"`` / ``"relative"``), a scale override or a soft-cap -- whose formula
``attention_bias.py`` and ``variants.py`` judge against the declared oracle instead.
"""

from transformer_conformance.context import CheckContext, NotApplicable


def require_notes_scoring(ctx: CheckContext) -> None:
    """NotApplicable when the target's declared attention scoring is not the notes' one.

    Claims: arch.notes-default.
    """
    arch = ctx.architecture
    declared = []
    if arch.positions in ("alibi", "relative"):
        judge = "alibi" if arch.positions == "alibi" else "relbias"
        declared.append(f"positions={arch.positions!r} (judged by attention.{judge}.differential)")
    if arch.attn_scale is not None or arch.attn_softcap is not None:
        judge = "with the bias" if declared else "by attention.scoring.declared"
        declared.append(f"attn_scale={arch.attn_scale}, attn_softcap={arch.attn_softcap} (judged {judge})")
    if declared:
        raise NotApplicable(
            f"target {ctx.adapter.name!r} declares another attention scoring than the notes' formula: "
            + "; ".join(declared)
        )
