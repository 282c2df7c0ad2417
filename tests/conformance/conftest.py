"""Local fixtures for the conformance framework tests: pytester, a subprocess runner, and a check
that every JSON report these tests write validates against the shipped JSON Schema."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from transformer_conformance.report import SCHEMA_PATH, AuditReport

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_report(data: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``data`` is a report of the shipped schema."""
    jsonschema.Draft202012Validator(SCHEMA).validate(data)


@pytest.fixture(autouse=True)
def _reports_match_the_schema(monkeypatch):
    """Every report a test writes in-process is read back and validated against the schema (the
    subprocess tests validate theirs explicitly)."""
    write = AuditReport.write_json

    def write_and_validate(self: AuditReport, path: Path) -> None:
        write(self, path)
        validate_report(json.loads(path.read_text(encoding="utf-8")))

    monkeypatch.setattr(AuditReport, "write_json", write_and_validate)


@pytest.fixture
def run_python():
    """Run ``python ARGS`` with the project on PYTHONPATH; returns the CompletedProcess."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run(
            [sys.executable, *args],
            cwd=cwd or ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run
