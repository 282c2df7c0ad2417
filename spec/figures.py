"""Draw the figures of ``spec/SPEC.md`` into ``spec/figures/`` (SVG, byte-deterministic).

``python -m transformer_conformance.spec.figures [DIR]`` (run by ``make spec``) computes every
picture with the reference implementation and draws it with matplotlib (the ``html`` extra). The
list of figures, their captions and the claims they illustrate is ``render.FIGURES`` (stdlib), so
that rendering SPEC.md never needs torch or matplotlib: this module is imported by nothing else.
Determinism: a fixed ``svg.hashsalt``, no date in the metadata, and text drawn as paths.
"""

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from transformer_conformance.reference.attention import scaled_dot_product_attention
from transformer_conformance.reference.loss import next_token_loss
from transformer_conformance.reference.masks import causal_mask, padding_mask_from_lengths
from transformer_conformance.reference.multihead import MultiHeadAttention
from transformer_conformance.reference.positional import sinusoidal_encoding
from transformer_conformance.spec import SPEC_DIR
from transformer_conformance.spec.render import FIGURES

OUT_DIR = SPEC_DIR / "figures"
RC: Any = {"svg.hashsalt": "transformer-conformance-spec", "svg.fonttype": "path", "font.size": 9}


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _integer_ticks(ax: Any) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _mask_panel(ax: Any, keep: torch.Tensor, title: str, xlabel: str, ylabel: str) -> None:
    ax.imshow(keep.int().numpy(), cmap="Greens", vmin=0, vmax=1.3, interpolation="nearest")
    for (i, j), v in zip(
        torch.cartesian_prod(*map(torch.arange, keep.shape)).tolist(), keep.flatten().tolist()
    ):
        ax.text(j, i, "1" if v else "0", ha="center", va="center", fontsize=7, color="white" if v else "gray")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _integer_ticks(ax)


def masks() -> Figure:
    """Causal keep-masks (square, and num_q < num_k in both alignments) and left/right padding masks."""
    fig = _figure(10.0, 2.6)
    axes = fig.subplots(1, 5)
    _mask_panel(axes[0], causal_mask(6, 6), "causal 6 x 6", "key", "query")
    _mask_panel(
        axes[1], causal_mask(3, 6, alignment="bottom-right"), "causal 3 x 6, bottom-right", "key", "query"
    )
    _mask_panel(axes[2], causal_mask(3, 6, alignment="top-left"), "causal 3 x 6, top-left", "key", "query")
    lengths = torch.tensor([6, 4, 2])
    _mask_panel(
        axes[3], padding_mask_from_lengths(lengths, 6, side="right"), "padding, right", "position", "sample"
    )
    _mask_panel(
        axes[4], padding_mask_from_lengths(lengths, 6, side="left"), "padding, left", "position", "sample"
    )
    fig.suptitle("keep-masks: 1 = may attend / real token (canonical polarity)", fontsize=10)
    return fig


def sinusoidal() -> Figure:
    """The sinusoidal table, and the dot product PE[p] . PE[p + k] against the offset k for several p."""
    table = sinusoidal_encoding(64, 32, dtype=torch.float64)
    fig = _figure(10.0, 3.4)
    left, right = fig.subplots(1, 2)
    image = left.imshow(table.numpy(), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    left.set_title("PE[position, dimension] (d_model 32, interleaved sin/cos)", fontsize=9)
    left.set_xlabel("dimension")
    left.set_ylabel("position")
    fig.colorbar(image, ax=left, shrink=0.85)
    wide = sinusoidal_encoding(160, 32, dtype=torch.float64)
    offsets = torch.arange(0, 96)
    styles = (("-", 3.0, None), ("--", 1.6, None), ("none", 1.0, "o"))
    for p, (line, width, marker) in zip((0, 16, 48), styles):
        dots = (wide[p] * wide[p + offsets]).sum(-1)
        right.plot(
            offsets.numpy(),
            dots.numpy(),
            linestyle=line,
            linewidth=width,
            marker=marker,
            markersize=3,
            label=f"p = {p}",
        )
    right.set_title("PE[p] . PE[p + k] depends on the offset k only", fontsize=9)
    right.set_xlabel("offset k")
    right.set_ylabel("dot product")
    right.legend(fontsize=8)
    return fig


def diagonal_counterexample() -> Figure:
    """Refuted attention.self.diagonal-max: x1 = [1, 0], x2 = [2, 0], identity projections."""
    x = torch.tensor([[[1.0, 0.0], [2.0, 0.0]]], dtype=torch.float64)
    q_k = x @ x.transpose(-2, -1)
    _, weights = scaled_dot_product_attention(x, x, x)
    fig = _figure(6.5, 2.8)
    axes = fig.subplots(1, 2)
    for ax, data, title in ((axes[0], q_k[0], "scores q_i . k_j"), (axes[1], weights[0], "softmax weights")):
        ax.imshow(data.numpy(), cmap="viridis", interpolation="nearest")
        for i in range(2):
            for j in range(2):
                ax.text(j, i, f"{float(data[i, j]):.2f}", ha="center", va="center", color="white", fontsize=9)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([0, 1], ["token 1", "token 2"])
        ax.set_yticks([0, 1], ["token 1", "token 2"])
        ax.set_xlabel("key")
        ax.set_ylabel("query")
    fig.suptitle("token 1 attends more to token 2 than to itself", fontsize=10)
    return fig


def heads_counterexample() -> Figure:
    """Refuted mha.params-independent-of-heads: the parameter count for h = 1 .. 16 at d_model 16."""
    heads = [1, 2, 4, 8, 16]
    counts = [sum(p.numel() for p in MultiHeadAttention(16, h).parameters()) for h in heads]
    fig = _figure(5.0, 2.6)
    ax = fig.subplots()
    bars = ax.bar([str(h) for h in heads], counts, color="#4477aa")
    ax.bar_label(bars, fontsize=8)
    ax.set_xlabel("number of heads h (d_model 16)")
    ax.set_ylabel("parameters")
    ax.set_ylim(0, max(counts) * 1.2)
    ax.set_title("4 d_model (d_model + 1) parameters for every h", fontsize=9)
    return fig


def loss_counterexample() -> Figure:
    """Refuted loss.unshifted-as-stated: a copy model scores ~0 unshifted, badly on the shifted loss."""
    vocab = 6
    ids = torch.tensor([[1, 2, 3, 4, 5, 1], [5, 4, 3, 2, 1, 2]])
    logits = 20.0 * torch.nn.functional.one_hot(ids, vocab).double()
    unshifted = float(torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), ids.reshape(-1)))
    shifted = float(next_token_loss(logits, ids, pad_id=None))
    fig = _figure(6.2, 2.4)
    ax = fig.subplots()
    bars = ax.barh(
        ["unshifted (as stated)", "next-token (shifted)"], [unshifted, shifted], color=["#cc6677", "#4477aa"]
    )
    ax.bar_label(bars, labels=[f"{unshifted:.1e}", f"{shifted:.1f}"], fontsize=8, padding=3)
    ax.set_xlabel("cross-entropy (nats) of a model that copies its input")
    ax.set_xlim(0, shifted * 1.25)
    ax.set_title("a copy model: unshifted loss about 0, next-token loss high", fontsize=9)
    return fig


DRAW: dict[str, Callable[[], Figure]] = {
    "masks.svg": masks,
    "sinusoidal.svg": sinusoidal,
    "refuted-diagonal-max.svg": diagonal_counterexample,
    "refuted-params-heads.svg": heads_counterexample,
    "refuted-unshifted-loss.svg": loss_counterexample,
}


def svg(fig: Figure) -> bytes:
    """The SVG bytes of ``fig``, without a date (byte-deterministic for one matplotlib version)."""
    buf = io.BytesIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def render_all() -> dict[str, bytes]:
    """File name -> SVG bytes of every figure of ``render.FIGURES``."""
    missing = sorted(set(FIGURES) - set(DRAW))
    if missing:
        raise ValueError(f"render.FIGURES names figures without a drawing function: {missing}")
    with matplotlib.rc_context(RC):
        return {name: svg(DRAW[name]()) for name in FIGURES}


def main(argv: list[str] | None = None) -> None:
    """Write the figures to DIR (default spec/figures/), removing stale SVG files there."""
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else OUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    figures = render_all()
    for stale in out.glob("*.svg"):
        if stale.name not in figures:
            stale.unlink()
    for name, data in figures.items():
        (out / name).write_bytes(data)


if __name__ == "__main__":
    main()
