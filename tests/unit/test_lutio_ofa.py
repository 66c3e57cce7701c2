"""Import of the Once-for-All / ProxylessNAS yaml LUT format (real files from
/work/shared/data/ofa_lut_examples/, sxtyzhangzk/once-for-all vai_deploy/lut-examples, MIT)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from hilnas.server.lut.io import (OFA_RUNTIME, LutFileError, import_ofa_yaml, ofa_lut_id,
                                  parse_ofa_key, parse_ofa_yaml)
from hilnas.server.store import AmbiguousLutError, Store

OFA_DIR = Path("/work/shared/data/ofa_lut_examples")
OFA_FILES = sorted(OFA_DIR.glob("*.yaml"))
pytestmark = pytest.mark.skipif(not OFA_FILES, reason="OFA example LUTs not present")


def _top_level_keys(text: str) -> list[str]:
    return [line[:-1] for line in text.splitlines() if line and not line[0].isspace()]


@pytest.mark.parametrize("path", OFA_FILES, ids=lambda p: p.name)
def test_every_example_file_parses(path: Path) -> None:
    text = path.read_text()
    entries = parse_ofa_yaml(text, source=path.name)
    assert list(entries) == _top_level_keys(text)
    size = int(path.name.split("_")[0])
    assert f"Conv-input:{size}x{size}x3-output:{size // 2}x{size // 2}x30" in entries
    for key, e in entries.items():
        assert e.count >= 1 and e.mean > 0 and e.std >= 0, key
        parts = parse_ofa_key(key)
        assert parts["op"] in {"Conv", "Conv_1", "Logits", "expanded_conv"}
        assert len(parts["input"]) == 3
    # Spot-check against the raw text: the value after the key's "mean:" line.
    first = next(iter(entries))
    mean = re.search(re.escape(first) + r":\n  count: \d+\n  mean: (\S+)", text).group(1)
    assert entries[first].mean == float(mean)


def test_values_of_one_entry() -> None:
    entries = parse_ofa_yaml((OFA_DIR / "224_lookup_table.yaml").read_text())
    e = entries["expanded_conv-input:112x112x20-output:56x56x30-expand:4-kernel:3-stride:2-"
                "idskip:0"]
    assert (e.count, e.mean, e.std) == (153, 7.375339869281047, 0.17678930864809245)
    assert parse_ofa_key("expanded_conv-input:112x112x20-output:56x56x30-expand:4-kernel:3-"
                         "stride:2-idskip:0") == {
        "op": "expanded_conv", "input": (112, 112, 20), "output": (56, 56, 30), "expand": 4,
        "kernel": 3, "stride": 2, "idskip": 0}


def test_import_keeps_keys_and_never_mixes_files(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        reports = [import_ofa_yaml(store, OFA_DIR / name, device_key="ofa-ref")
                   for name in ("224_lookup_table.yaml", "128_lookup_table.yaml")]
        lut224 = reports[0].lut_id
        assert (lut224.runtime, lut224.runtime_version) == (OFA_RUNTIME, "224_lookup_table.yaml")
        assert lut224 == ofa_lut_id(OFA_DIR / "224_lookup_table.yaml")
        assert reports[0].inserted == 103
        rows = store.lut_dict(lut224)
        conv = rows["Conv-input:224x224x3-output:112x112x30"]
        assert (conv.n, conv.median_ms, conv.p90_ms) == (1406, 3.58649146514936, None)
        assert conv.conditions["median_is_mean"] is True
        assert not any("128x128" in k for k in rows)
        with pytest.raises(AmbiguousLutError, match="runtime_version"):
            store.find_lut("ofa-ref")
        assert store.find_lut("ofa-ref", runtime_version="128_lookup_table.yaml") == \
            reports[1].lut_id
        again = import_ofa_yaml(store, OFA_DIR / "224_lookup_table.yaml", device_key="ofa-ref")
        assert (again.inserted, again.skipped) == (0, 103)


def test_flow_form_comments_and_quotes() -> None:
    text = ("---\n# header comment\n'Conv-input:8x8x3-output:4x4x8': {count: 5, mean: 0.5, "
            "std: 0.1}\n\nLogits-input:1x1x8-output:10:   # trailing comment\n"
            "    count: 7\n    mean: 0.25\n    std: 0.0\n")
    entries = parse_ofa_yaml(text)
    assert entries["Conv-input:8x8x3-output:4x4x8"].count == 5
    assert entries["Logits-input:1x1x8-output:10"].mean == 0.25


@pytest.mark.parametrize("text, message", [
    ("a:\n  count: 1\n  mean: 1.0\n", r"lacks \['std'\]"),
    ("a:\n  count: 1\n  mean: x\n  std: 1\n", "mean 'x' is not a number"),
    ("a:\n  count: 1.5\n  mean: 1\n  std: 1\n", "count '1.5' is not a whole number"),
    ("a:\n  count: 1\n  median: 1\n", "unknown field 'median'"),
    ("a:\n  count: 1\n  count: 2\n", "given twice"),
    ("a:\n  count: 1\n  mean: 1\n  std: 1\na:\n", "already defined on line 1"),
    ("  count: 1\n", "outside an entry"),
    ("just text\n", "expected 'key:'"),
    ("a:\n  count: 1\n  mean: inf\n  std: 0\n", "mean is inf"),
    ("", "no LUT entries"),
])
def test_malformed_yaml_names_the_line(text: str, message: str) -> None:
    with pytest.raises(LutFileError, match=message):
        parse_ofa_yaml(text, source="t.yaml")
