"""Command line: ``python -m benchmarks [NAME ...] [--quick] [--device auto|cpu|cuda] [--only NAME,...]
[--seeds N] [--json PATH]``.

Runs every benchmark (or those named), prints one table and, with ``--json``, writes the rows, the method
of each benchmark and the machine's description. A benchmark that raises is reported as an ERROR row and
makes the exit status 1; the others still run.
"""

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks import BENCHMARKS
from benchmarks._timing import Mode, Row, Settings, resolve_device


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (like --only): {', '.join(BENCHMARKS)}")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds")
    size.add_argument("--tiny", action="store_true", help="toy sizes: checks that every benchmark runs")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per figure")
    parser.add_argument("--skip-thorough", action="store_true", help="audit-cost: skip the thorough profile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=None, help="calibration: seeds per target and profile")
    parser.add_argument("--mutant-seeds", type=int, default=None,
                        help="calibration: seeds per mutant and profile (default seeds/10)")
    parser.add_argument("--part", choices=("all", "false-alarms", "kills"), default="all",
                        help="calibration: only the correct targets' false alarms or only the mutants' kills")
    parser.add_argument("--json", dest="json_path", default=None, help="write the rows and methods here")
    return parser.parse_args(argv)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import jaxtyping

    info: dict[str, Any] = {
        "shape_checks": "off" if jaxtyping.config.jaxtyping_disable else "on",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def format_value(row: Row) -> str:
    value = row.value
    text = f"{value:.3g}" if abs(value) < 1e5 else f"{value:.3e}"
    return f"{text} {row.unit}".strip()


def render_table(rows: Sequence[Row]) -> str:
    """One plain-text table: benchmark, case, figure, value, target, ok, note."""
    header = ("benchmark", "case", "figure", "value", "target", "ok", "note")
    body = [
        (r.bench, r.case, r.metric, format_value(r), r.target,
         "" if r.meets is None else ("yes" if r.meets else "NO"), r.note)
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in body)) if body else len(h) for i, h in enumerate(header)]
    widths[-1] = len(header[-1])  # the note column is not padded

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(b) for b in body)])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    mode: Mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    for flag, value in (("--seeds", args.seeds), ("--mutant-seeds", args.mutant_seeds)):
        if value is not None and value < 1:
            raise SystemExit(f"argument '{flag}': expected a positive number, got {value}")
    settings = Settings(
        resolve_device(args.device), mode, args.repeats, args.skip_thorough, args.seed, args.seeds,
        args.mutant_seeds, args.part,
    )
    named = [n.strip() for n in args.only.split(",") if n.strip()] + list(args.names)
    selected = named or list(BENCHMARKS)
    unknown = [n for n in selected if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"argument '--only': expected names from {list(BENCHMARKS)}, got {unknown}")
    rows: list[Row] = []
    methods: dict[str, str] = {}
    durations: dict[str, float] = {}
    failed = False
    print(f"benchmarks: mode={mode} device={settings.device} torch={torch.__version__} "
          f"threads={torch.get_num_threads()} shape_checks={machine()['shape_checks']}", file=sys.stderr)
    for name in selected:
        module = importlib.import_module(BENCHMARKS[name])
        methods[name] = (module.__doc__ or "").strip()
        print(f"  running {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            produced: list[Row] = module.run(settings)
            for row in produced:
                for problem in row.problems():
                    failed = True
                    print(f"  malformed row {row.case} / {row.metric}: {problem}", file=sys.stderr)
            rows.extend(produced)
        except Exception as exc:
            failed = True
            traceback.print_exc()
            rows.append(Row(name, "-", "ERROR", float("nan"), note=f"{type(exc).__name__}: {exc}"[:200]))
        durations[name] = time.perf_counter() - start
        print(f"  {name} done in {durations[name]:.1f} s", file=sys.stderr, flush=True)
    print(render_table(rows))
    if args.json_path:
        path = Path(args.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "mode": mode,
            "device": str(settings.device),
            "machine": machine(),
            "durations_s": durations,
            "methods": methods,
            "rows": [r.as_dict() for r in rows],
        }
        path.write_text(json.dumps(payload, indent=2, default=str, allow_nan=True) + "\n")
        print(f"wrote {path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
