"""Report formats for CI: the JSON report's schema (shipped as package data) and JUnit results that tell
a known deviation from a not-applicable check."""

import json
import xml.etree.ElementTree as ET

import jsonschema
import pytest

from transformer_conformance.api import ReportPaths, run_audit
from transformer_conformance.report import SCHEMA_PATH, SCHEMA_VERSION

from . import fakes
from .conftest import SCHEMA, validate_report


def nan_deviation(tmp_path):
    (tmp_path / "fake-nan.toml").write_text(
        '[[deviation]]\nclaim = "attention.formula"\ncategory = "bug"\nreason = "planted NaN"\n'
    )
    return tmp_path


def test_schema_is_valid_and_shipped_with_the_package():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA_PATH.parent.name == "schema" and SCHEMA["properties"]["schema_version"] == {
        "const": SCHEMA_VERSION
    }


def test_every_status_validates_and_a_broken_report_does_not(tmp_path):
    paths = ReportPaths(json=tmp_path / "r.json", junit=tmp_path / "r.xml")
    report = run_audit(
        [fakes.NaNAdapter(), fakes.GoodAdapter()],
        registry=fakes.REGISTRY,
        deviations_dir=nan_deviation(tmp_path),
        report_paths=paths,
        progress=False,
    )
    data = json.loads(paths.json.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert {r["status"] for r in data["results"]} >= {"pass", "known-deviation", "blocked", "not-applicable"}
    validate_report(data)
    validate_report(json.loads(json.dumps(report.to_json(), default=str)))
    for broken in (
        {k: v for k, v in data.items() if k != "schema_version"},
        {**data, "results": [{**data["results"][0], "status": "passed"}]},
        {**data, "results": [{**r, "deviation": None} for r in data["results"]]},  # a deviation without entry
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate_report(broken)


def test_junit_tells_known_deviation_from_not_applicable(tmp_path):
    paths = ReportPaths(junit=tmp_path / "r.xml")
    run_audit(
        [fakes.NaNAdapter()],
        registry=fakes.REGISTRY,
        deviations_dir=nan_deviation(tmp_path),
        report_paths=paths,
        progress=False,
    )
    cases = {c.get("name"): c for c in ET.parse(paths.junit).getroot().iter("testcase")}
    dev, na, blocked = cases["dummy.attention"], cases["dummy.layernorm"], cases["dummy.rows"]
    skipped = {name: case.find("skipped") for name, case in cases.items()}
    assert skipped["dummy.attention"].get("type") == "known-deviation"
    assert skipped["dummy.attention"].get("message") == "known deviation (bug): planted NaN"
    assert dev.get("file") == str(tmp_path / "fake-nan.toml")
    assert skipped["dummy.layernorm"].get("type") == "not-applicable"
    assert "does not declare capability layer_norm" in skipped["dummy.layernorm"].get("message")
    assert na.get("file", "").endswith("tests/conformance/fakes.py")  # the adapter that declares it
    assert skipped["dummy.rows"].get("type") == "blocked" and blocked.get("file") is None
    status = {name: c.find("properties/property[@name='status']").get("value") for name, c in cases.items()}
    assert status == {
        "dummy.attention": "known-deviation",
        "dummy.rows": "blocked",
        "dummy.layernorm": "not-applicable",
    }
