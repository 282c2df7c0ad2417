"""The audit of every decoder-only ``transformers`` model type through ``hf-causal-lm:<model_type>``.

``make hf-table`` (or ``python -m benchmarks.hf_model_table [--readme README.md] [--json out.json]``):
for each model type of ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES``, a worker process (time and memory
capped) first builds the tiny model offline and runs one forward pass; a type that cannot (extra
packages, remote code, multimodal inputs, ...) is listed as skipped with the reason. The others are
audited with the metamorphic LM checks and the loss checks; the Markdown table (model types as rows,
checks as columns: pass / FAIL / dev / n-a / blocked) goes to stdout, or between the markers
``<!-- hf-table:start -->`` and ``<!-- hf-table:end -->`` of the README with ``--readme``.
The sweep is a script, not a test: it takes minutes.
"""

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

#: The checks shown (columns), with a short heading each.
COLUMNS: dict[str, str] = {
    "lm.shape": "shape",
    "lm.causality": "causal",
    "lm.padding-invariance": "padding",
    "lm.batch-independence": "batch",
    "lm.cache-equals-recompute": "cache",
    "lm.chunked-prefill": "chunked",
    "lm.cache-with-padding": "padded cache",
    "lm.teacher-forcing": "teacher forcing",
    "lm.determinism": "determinism",
    "loss.value": "loss",
    "loss.ignores-padding": "loss pads",
    "lm.reference": "reference",
}
SHOWN = {
    "pass": "pass",
    "fail": "FAIL",
    "known-deviation": "dev",
    "not-applicable": "n-a",
    "blocked": "blocked",
}
TIMEOUT_S, MEMORY_BYTES = 120, 8 * 2**30
#: Worker processes side by side (``HF_TABLE_WORKERS``; default 2).
WORKERS = int(os.environ.get("HF_TABLE_WORKERS", "2"))
START, END = "<!-- hf-table:start -->", "<!-- hf-table:end -->"


def _first_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    return re.sub(r"\s+", " ", text)[:140]


def worker(model_type: str) -> dict[str, Any]:
    """Build ``model_type`` tiny and offline, run one forward, then audit it (one JSON-able dict)."""
    import torch

    from transformer_conformance.api import run_audit
    from transformer_conformance.reference.config import TransformerConfig
    from transformer_conformance.targets import hf_causal_lm

    if model_type in hf_causal_lm.NOT_DRIVEN:
        return {"model_type": model_type, "skipped": "not driven: " + hf_causal_lm.NOT_DRIVEN[model_type]}
    if model_type in hf_causal_lm.NOT_BUILT:
        return {"model_type": model_type, "skipped": "not built: " + hf_causal_lm.NOT_BUILT[model_type]}
    try:
        model, _ = hf_causal_lm.build_causal_lm(
            model_type, TransformerConfig.tiny(), torch.device("cpu"), torch.float32
        )
        logits = hf_causal_lm.CausalLMHandle(model).logits(torch.ones(2, 4, dtype=torch.long))
        if logits.shape[-1] != TransformerConfig.tiny().vocab_size:
            raise ValueError(f"vocabulary not shrunk (nested text config?): logits {tuple(logits.shape)}")
    except Exception as exc:  # any build/forward failure is a skip reason
        return {"model_type": model_type, "skipped": _first_line(exc)}
    report = run_audit([hf_causal_lm.PREFIX + model_type], profile="ci", progress=False, check=list(COLUMNS))
    return {
        "model_type": model_type,
        "results": {r.check: r.status for r in report.results if r.check in COLUMNS},
        "messages": {r.check: r.message[:400] for r in report.results if r.status == "fail"},
    }


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


class _OverTime(BaseException):
    """Raised by the alarm when one model type takes longer than ``TIMEOUT_S`` (not an ``Exception``, so
    the audit's own error handling does not turn it into a failed check)."""


def _alarm(signum: int, frame: Any) -> None:
    raise _OverTime


def worker_batch(model_types: list[str]) -> None:
    """``worker`` for each model type in turn (one import of torch and transformers), one JSON line each."""
    signal.signal(signal.SIGALRM, _alarm)
    for model_type in model_types:
        signal.alarm(TIMEOUT_S)
        try:
            row = worker(model_type)
        except _OverTime:
            row = {"model_type": model_type, "skipped": f"no result within {TIMEOUT_S} s"}
        finally:
            signal.alarm(0)
        print(json.dumps(row), flush=True)


def run_batch(model_types: list[str]) -> list[dict[str, Any]]:
    """``worker_batch`` in a memory-capped subprocess; a type whose worker dies is skipped with the
    reason and the rest of the batch rerun in a fresh process."""
    rows: list[dict[str, Any]] = []
    todo = list(model_types)
    while todo:
        cmd = [sys.executable, "-m", "benchmarks.hf_model_table", "--worker", ",".join(todo)]
        try:
            done = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S * (len(todo) + 1),
                preexec_fn=_limit_memory,
                check=False,
            )
            stdout, why = (
                done.stdout,
                f"worker exit {done.returncode}: "
                + ((done.stderr.strip().splitlines() or ["(no output)"])[-1][:140]),
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout or b""
            stdout = out.decode() if isinstance(out, bytes) else out
            why = "worker timed out"
        got = [json.loads(ln) for ln in stdout.splitlines() if ln.startswith("{")]
        rows += got
        todo = todo[len(got) :]
        if todo:
            rows.append({"model_type": todo[0], "skipped": why})
            todo = todo[1:]
    return rows


def model_types() -> list[str]:
    """Every model type with a causal-LM class in the installed transformers."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def markdown(rows: list[dict[str, Any]], version: str, run: str = "") -> str:
    """The results table, then the skipped model types with their reasons; ``run`` says which run."""
    audited = [r for r in rows if "results" in r]
    skipped = [r for r in rows if "skipped" in r]
    head = "| model type | " + " | ".join(COLUMNS.values()) + " |"
    lines = [
        f"Audited {len(audited)} of {len(rows)} causal-LM model types of transformers {version} "
        f"(tiny default configs, random weights, float32, profile ci; one `make hf-table` run{run}).",
        "",
        head,
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for r in audited:
        cells = [SHOWN.get(r["results"].get(c, "-"), r["results"].get(c, "-")) for c in COLUMNS]
        lines.append(f"| `{r['model_type']}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Not audited ({len(skipped)}; `not built` / `not driven`: the reason recorded in "
        "`conformance/targets/hf_causal_lm_types.toml`; otherwise the error the build or first forward "
        "raised):",
        "",
    ]
    lines += [f"- `{r['model_type']}`: {r['skipped']}" for r in skipped]
    return "\n".join(lines) + "\n"


def write_readme(path: Path, table: str) -> None:
    """Replace the text between the table markers of ``path``."""
    text = path.read_text(encoding="utf-8")
    start, end = text.index(START) + len(START), text.index(END)
    path.write_text(text[:start] + "\n" + table + text[end:], encoding="utf-8")


def main() -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help="internal: audit these model types, one JSON line each")
    parser.add_argument("--only", help="comma-separated model types (default: all)")
    parser.add_argument("--readme", type=Path, help="write the table between the README markers")
    parser.add_argument("--json", type=Path, help="write every row (with failure messages) as JSON")
    args = parser.parse_args()
    if args.worker:
        worker_batch(args.worker.split(","))
        return
    import datetime
    import time

    import transformers

    start = time.monotonic()
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    types = args.only.split(",") if args.only else model_types()
    batches = [types[i::WORKERS] for i in range(WORKERS)]
    with ThreadPoolExecutor(WORKERS) as pool:
        rows = sorted(
            (r for rows in pool.map(run_batch, batches) for r in rows), key=lambda r: r["model_type"]
        )
    minutes = (time.monotonic() - start) / 60
    table = markdown(
        rows, transformers.__version__, f" started {started}, {minutes:.0f} min on {WORKERS} workers"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    if args.readme:
        write_readme(args.readme, table)
    print(table)


if __name__ == "__main__":
    main()
