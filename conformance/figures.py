"""Pictures of failures for the HTML report, drawn with matplotlib from a result's ``evidence``.

Needs the ``html`` extra (``pip install 'transformer-conformance[html]'``); ``available()`` says
whether matplotlib imports. Every function returns a ``data:image/png;base64,...`` URI, so the page
embeds the picture and needs nothing else. Uses ``matplotlib.figure.Figure`` directly (no pyplot:
no global state, no GUI backend). See ``conformance/evidence.py`` for the payloads.
"""

import base64
import io
import math
from typing import Any

#: Pixels per inch of the embedded pictures.
DPI = 90


def available() -> bool:
    """True when matplotlib can be imported (the ``html`` extra is installed)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _grid(rows: list[list[float | None]]) -> Any:
    import numpy as np

    return np.array([[math.nan if x is None else x for x in row] for row in rows], dtype=float)


def _bad_black(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="black")


def _integer_ticks(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def attention_png(payload: dict[str, Any]) -> str:
    """Heatmaps of the target's weights, the oracle's and their difference (query rows, key columns)."""
    from matplotlib.colors import TwoSlopeNorm

    target, oracle = _grid(payload["target"]), _grid(payload["oracle"])
    diff = target - oracle
    fig = _figure(10.5, 3.4)
    axes = fig.subplots(1, 3)
    top = max(1e-12, float(max(abs(x) for x in diff.flatten() if math.isfinite(x)) if diff.size else 1.0))
    panels: list[tuple[str, Any, Any, dict[str, Any]]] = [
        ("target weights", target, _bad_black("viridis"), {"vmin": 0.0, "vmax": 1.0}),
        ("oracle weights (float64)", oracle, _bad_black("viridis"), {"vmin": 0.0, "vmax": 1.0}),
        ("target - oracle", diff, _bad_black("RdBu_r"), {"norm": TwoSlopeNorm(0.0, -top, top)}),
    ]
    hidden = None
    if payload.get("visible") is not None:
        import numpy as np

        hidden = ~np.array(payload["visible"], dtype=bool)
    for ax, (title, data, cmap, scale) in zip(axes, panels):
        image = ax.imshow(data, cmap=cmap, aspect="auto", interpolation="nearest", **scale)
        if hidden is not None and hidden.shape == data.shape:
            ys, xs = hidden.nonzero()
            ax.scatter(xs, ys, marker="s", s=30, facecolors="none", edgecolors="white", linewidths=1.2)
        ax.set_title(title, fontsize=10)
        _integer_ticks(ax)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        fig.colorbar(image, ax=ax, shrink=0.85)
    where = payload.get("where") or ""
    masked = "; white squares: masked keys" if hidden is not None else ""
    fig.suptitle(
        f"batch {payload['batch']}, head {payload['head']}  {where}  (black: NaN{masked})", fontsize=9
    )
    return _png(fig)


def influence_png(payload: dict[str, Any]) -> str:
    """The allowed dependency pattern beside the measured one: how far each output moved when each
    input position alone was perturbed; red crosses where an output moved that may not see that input."""
    import numpy as np
    from matplotlib.colors import LogNorm

    moved = _grid(payload["moved"])
    visible = np.array(payload["visible"], dtype=bool)
    threshold = payload.get("unchanged_below") or 0.0
    fig = _figure(9.0, 3.8)
    axes = fig.subplots(1, 2)
    axes[0].imshow(visible, cmap="Greens", vmin=0, vmax=1.4, aspect="auto", interpolation="nearest")
    axes[0].set_title("may depend on (green)", fontsize=10)
    finite = moved[np.isfinite(moved) & (moved > 0)]
    low = max(float(threshold) / 10, float(finite.min()) if finite.size else 1e-12, 1e-300)
    high = max(low * 10, float(finite.max()) if finite.size else 1.0)
    shown = np.where(np.isfinite(moved), np.clip(moved, low, None), np.nan)
    image = axes[1].imshow(
        shown, cmap=_bad_black("YlOrRd"), norm=LogNorm(low, high), aspect="auto", interpolation="nearest"
    )
    fig.colorbar(image, ax=axes[1], shrink=0.85, label="largest change")
    leaks = ~visible & ~(np.nan_to_num(moved, nan=np.inf) <= threshold)
    ys, xs = np.nonzero(leaks)
    axes[1].scatter(xs, ys, marker="x", color="#1f3a93", s=45, linewidths=2, label="moved but may not")
    axes[1].set_title(f"measured change (unchanged below {threshold:.1e})", fontsize=10)
    if len(xs):
        axes[1].legend(loc="lower left", fontsize=8, framealpha=0.8)
    for ax in axes:
        _integer_ticks(ax)
        ax.set_xlabel(payload.get("cols", "input position"))
        ax.set_ylabel(payload.get("rows", "output position"))
    fig.suptitle(f"{payload.get('where', '')}  (black: NaN/Inf)", fontsize=9)
    return _png(fig)


def steps_png(payload: dict[str, Any]) -> str:
    """The error of every decoding step or chunk against the error it was allowed (log scale)."""
    labels = payload["labels"]
    x = list(range(len(labels)))
    measured = [math.inf if m is None else m for m in payload["measured"]]
    allowed = [math.nan if a is None else a for a in payload["allowed"]]
    finite = [m for m in measured if math.isfinite(m) and m > 0] + [a for a in allowed if a == a and a > 0]
    floor = min(finite) / 10 if finite else 1e-12
    top = max(finite) * 10 if finite else 1.0
    shown = [top if not math.isfinite(m) else max(m, floor) for m in measured]
    fig = _figure(7.5, 3.2)
    ax = fig.subplots()
    ax.plot(x, shown, marker="o", label="measured error (max |cached - recomputed|)")
    ax.plot(x, allowed, linestyle="--", color="gray", label="allowed (direct rule at the worst entry)")
    bad = [i for i, (m, a) in enumerate(zip(measured, allowed)) if not m <= a]
    ax.scatter([x[i] for i in bad], [shown[i] for i in bad], color="red", zorder=3, s=60, label="exceeds")
    ax.set_yscale("log")
    ax.set_xticks(x, labels, rotation=45 if len(labels) > 12 else 0, fontsize=8)
    ax.set_xlabel("step (positions)")
    ax.set_ylabel("error")
    ax.set_title(payload.get("what", ""), fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def errors_png(payload: dict[str, Any]) -> str:
    """The distribution of the sampled elementwise errors against the tolerance: absolute errors
    against one allowed bound (differential rule), or error / own bound against 1 (direct rule)."""
    import numpy as np

    errors = np.array([math.inf if e is None else e for e in payload["abs_error"]], dtype=float)
    if payload.get("bound") is not None:
        bound = np.array([math.nan if b is None else b for b in payload["bound"]], dtype=float)
        values, limit, xlabel = errors / bound, 1.0, "error / allowed for that entry (direct rule)"
        limit_label = "allowed (error = its bound)"
    else:
        values, limit, xlabel = errors, float(payload.get("allowed") or 0.0), "absolute error"
        limit_label = f"allowed {limit:.2e}"
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    low = min(positive.min() if positive.size else 1e-12, limit if limit > 0 else 1e-12) / 2
    high = max(positive.max() if positive.size else 1.0, limit) * 2
    clipped = np.clip(finite, low, None)
    fig = _figure(7.5, 3.2)
    ax = fig.subplots()
    bins = np.logspace(math.log10(low), math.log10(high), 40)
    ax.hist(clipped, bins=bins, color="#4477aa", label=f"{len(finite)} sampled entries")
    ax.axvline(limit, color="red", linestyle="--", label=limit_label)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("entries")
    extra = f", {payload['nonfinite']} NaN/Inf" if payload.get("nonfinite") else ""
    ax.set_title(
        f"{payload.get('exceeding', '?')} of {payload.get('count', '?')} entries exceed{extra}  "
        f"({payload.get('rule', '')})",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    return _png(fig)


def verdict_png(measured: float, allowed: float) -> str:
    """For a failure without evidence: the measured value beside the allowed one (log scale)."""
    values = [abs(measured) if math.isfinite(measured) else math.nan, abs(allowed)]
    positive = [v for v in values if v == v and v > 0]
    floor = min(positive) / 10 if positive else 1e-12
    top = max(positive) * 10 if positive else 1.0
    shown = [top if v != v else max(v, floor) for v in values]
    fig = _figure(6.0, 1.8)
    ax = fig.subplots()
    ax.barh(["allowed", "measured"], [shown[1], shown[0]], color=["gray", "red"], left=floor)
    ax.set_xscale("log")
    ax.set_title(f"measured {measured:.3e} vs allowed {allowed:.3e}", fontsize=9)
    return _png(fig)


def timing_png(names: list[str], target_s: list[float], harness_s: list[float]) -> str:
    """Per target: seconds spent inside the target vs in the harness (stacked bars)."""
    fig = _figure(7.5, 0.45 * len(names) + 1.2)
    ax = fig.subplots()
    y = list(range(len(names)))
    ax.barh(y, target_s, color="#4477aa", label="in target")
    ax.barh(y, harness_s, left=target_s, color="#ccbb44", label="harness")
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.legend(fontsize=8)
    return _png(fig)


#: Evidence kind -> (caption, drawing function), in the order the page shows them.
DRAWERS = {
    "attention": ("attention weights: target, oracle and their difference", attention_png),
    "influence": ("influence map: which outputs move when which inputs are perturbed", influence_png),
    "steps": ("error per decoding step against the allowed error", steps_png),
    "errors": ("distribution of the elementwise errors against the tolerance", errors_png),
}


def failure_figures(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(caption, data URI) for each picture of one failed result (its ``evidence``, else measured vs
    allowed); a picture that cannot be drawn is left out."""
    out: list[tuple[str, str]] = []
    evidence = result.get("evidence") or {}
    for kind, (caption, draw) in DRAWERS.items():
        if kind in evidence:
            try:
                out.append((caption, draw(evidence[kind])))
            except Exception as exc:  # a malformed payload must not sink the report
                out.append((f"{caption}: not drawn ({type(exc).__name__}: {exc})", ""))
    measured, allowed = result.get("measured"), result.get("allowed")
    if not out and measured is not None and allowed is not None and result.get("failure_kind") != "timeout":
        out.append(("measured against allowed", verdict_png(float(measured), float(allowed))))
    return [(caption, uri) for caption, uri in out if uri]
