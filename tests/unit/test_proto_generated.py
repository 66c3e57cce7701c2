"""The generated gRPC code is current with agent.proto, and the contract keeps its rules."""
import re
from pathlib import Path

import pytest

from hilnas.protos import generate


def test_generated_code_is_current():
    pytest.importorskip("grpc_tools")
    assert generate.main(["--check"]) == 0, "run: python -m hilnas.protos.generate"


def test_stale_code_is_detected(tmp_path, monkeypatch):
    pytest.importorskip("grpc_tools")
    stale = tmp_path / "v1"
    stale.mkdir()
    for name in generate.OUTPUTS:
        (stale / name).write_text("# stale\n")
    monkeypatch.setattr(generate, "HERE", tmp_path)
    monkeypatch.setattr(generate, "PROTO", Path(generate.__file__).parent / "v1" / "agent.proto")
    assert generate.main(["--check"]) == 1


def test_every_field_is_commented_and_enums_start_unspecified():
    text = (Path(generate.__file__).parent / "v1" / "agent.proto").read_text()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        field = re.match(r"\s+(repeated |map<[^>]+> )?[\w.]+ \w+ = \d+;(.*)", line)
        if field and not line.strip().startswith("//"):
            # a field is documented by a trailing comment, or a comment line above it
            assert "//" in field.group(2) or lines[i - 1].strip().startswith("//") , line
    for enum in re.finditer(r"enum (\w+) \{\s*(\w+) = 0;", text):
        assert enum.group(2).endswith("_UNSPECIFIED"), enum.group(1)

