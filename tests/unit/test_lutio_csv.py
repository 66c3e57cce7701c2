"""LUT CSV export/import: exact round trip, and refusing to mix LUTs."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from hilnas.server.lut.io import (CSV_COLUMNS, LutFileError, LutMismatchError, export_lut_csv,
                                  import_lut_csv, read_lut_csv)
from hilnas.server.store import LutId, LutNotFoundError, LutRow, Store, UnknownDeviceError

LUT = LutId("fp-pi", "onnxruntime", "1.31.1", "cfg1")
OTHER = LutId("fp-pi", "onnxruntime", "1.30.0", "cfg1")
ROWS = [
    LutRow("sep_conv_3x3|cin=16|cout=16|h=32|w=32|s=1", "pi", n=40, median_ms=0.1 + 0.2,
           p90_ms=0.41, mean_ms=1 / 3, std_ms=0.01, ci95_low_ms=0.29, ci95_high_ms=0.31,
           energy_mj=1.25, energy_net_mj=0.75, energy_estimated=True, status="unstable",
           conditions={"before": {"temperatures_c": {"cpu": 48.5}}, "note": "a,b \"c\"\nd"},
           measured_at=1_700_000_000.123456),
    LutRow("max_pool_3x3|c=16|h=32|w=32|s=2", "pi", n=0, median_ms=None,
           status="unsupported_op", measured_at=1_700_000_001.0),
]


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / "a") as s:
        s.upsert_device("pi", fingerprint="fp-pi")
        s.put_lut_rows(LUT, ROWS)
        yield s


def test_round_trip_into_a_fresh_store(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "lut.csv"
    assert export_lut_csv(store, LUT, path) == 2
    with path.open(newline="") as fh:
        assert next(csv.reader(fh)) == list(CSV_COLUMNS)
    with Store.open(tmp_path / "b") as other:
        report = import_lut_csv(other, path)
        assert (report.lut_id, report.inserted, report.skipped) == (LUT, 2, 0)
        assert other.lut_dict(LUT) == store.lut_dict(LUT)  # every field, floats exact
        assert other.get_device("pi").fingerprint == "fp-pi"
        again = import_lut_csv(other, path)
        assert (again.inserted, again.skipped) == (0, 2)


def test_export_refuses_to_overwrite_or_export_nothing(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "lut.csv"
    path.write_text("keep me")
    with pytest.raises(LutFileError, match="overwrite=True"):
        export_lut_csv(store, LUT, path)
    assert path.read_text() == "keep me"
    assert export_lut_csv(store, LUT, path, overwrite=True) == 2
    with pytest.raises(LutNotFoundError, match="no rows"):
        export_lut_csv(store, OTHER, tmp_path / "x.csv")


def test_import_into_another_lut_needs_override(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "lut.csv"
    export_lut_csv(store, LUT, path)
    with pytest.raises(LutMismatchError, match="runtime_version: file '1.31.1' vs target '1.30.0'"):
        import_lut_csv(store, path, into=OTHER)
    assert store.lut_dict(OTHER) == {}
    report = import_lut_csv(store, path, into=OTHER, override_lut_id=True)
    assert report.inserted == 2 and set(store.lut_dict(OTHER)) == set(store.lut_dict(LUT))


def test_import_needs_a_known_device_when_asked(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "lut.csv"
    export_lut_csv(store, LUT, path)
    with Store.open(tmp_path / "b") as other:
        with pytest.raises(UnknownDeviceError):
            import_lut_csv(other, path, create_device=False)
        other.upsert_device("pi-2", fingerprint="fp-pi")
        report = import_lut_csv(other, path, device_key="pi-2", create_device=False)
        assert report.inserted == 2
        assert {r.device_key for r in other.lut_dict(LUT).values()} == {"pi-2"}


def test_file_mixing_two_luts_is_refused(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "lut.csv"
    export_lut_csv(store, LUT, path)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("1.31.1", "1.30.0", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LutFileError, match="mixes rows of 2 LUTs"):
        read_lut_csv(path)


def test_minimal_hand_written_csv(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "hand.csv"
    path.write_text("op_key,n,median_ms\nconv_a,10,1.5\nconv_b,12,2.5\n")
    with pytest.raises(LutFileError, match="device_key"):
        read_lut_csv(path)
    with pytest.raises(LutFileError, match="into=LutId"):
        import_lut_csv(store, path, device_key="pi")
    report = import_lut_csv(store, path, into=OTHER, device_key="pi")
    assert report.inserted == 2 and store.get_lut_row(OTHER, "conv_b").median_ms == 2.5


@pytest.mark.parametrize("body, message", [
    ("op_key,n,median_ms,device_key\na,x,1.0,pi\n", "n must be a whole number"),
    ("op_key,n,median_ms,device_key\na,1,nan,pi\n", "median_ms is nan"),
    ("op_key,n,median_ms,device_key\na,1,1.0,pi\na,2,2.0,pi\n", "already on line 2"),
    ("op_key,n,median_ms,device_key,colour\na,1,1.0,pi,red\n", "unknown columns"),
    ("op_key,n,median_ms,device_key,fingerprint\na,1,1.0,pi,fp\n", "all of"),
    ("op_key,n,median_ms,device_key\n", "no rows"),
])
def test_bad_csv(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(LutFileError, match=message):
        read_lut_csv(path)
