"""LUT rows in the run store: identity, incremental building, never mixing, crash safety."""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from hilnas.agent.config import MeasureConfig
from hilnas.agent.results import (BenchmarkResult, Conditions, EnergyResult, LatencyStats,
                                  Status)
from hilnas.server.store import (AmbiguousLutError, LutId, LutNotFoundError, LutRow, Store,
                                 StoreError, UnknownDeviceError, config_hash)

OLD = LutId("fp-pi", "onnxruntime", "1.30.0", "cfg1")
NEW = LutId("fp-pi", "onnxruntime", "1.31.1", "cfg1")


def row(key: str, median: float = 1.0, **kw: object) -> LutRow:
    return LutRow(op_key=key, device_key=kw.pop("device_key", "pi"), n=kw.pop("n", 30),
                  median_ms=median, p90_ms=median * 1.1, mean_ms=median, std_ms=0.01, **kw)


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path) as s:
        s.upsert_device("pi", fingerprint="fp-pi", info={"cpu_model": "Cortex-A72"})
        yield s


def test_config_hash_is_stable_and_order_free() -> None:
    a = config_hash({"warmup_runs": 10, "min_runs": 30, "cpu_affinity": (0, 1)})
    b = config_hash({"cpu_affinity": [0, 1], "min_runs": 30, "warmup_runs": 10})
    assert a == b and len(a) == 16
    assert a != config_hash({"warmup_runs": 10, "min_runs": 31, "cpu_affinity": (0, 1)})
    assert config_hash(MeasureConfig()) != config_hash(MeasureConfig(timeout_s=5.0))
    assert config_hash(MeasureConfig(timeout_s=1), exclude=["timeout_s"]) == \
        config_hash(MeasureConfig(timeout_s=9), exclude=["timeout_s"])
    with pytest.raises(ValueError, match="non-finite"):
        config_hash({"x": math.nan})


def test_put_keeps_existing_row_unless_replace(store: Store) -> None:
    assert store.put_lut_row(NEW, row("conv", 2.0, status="unstable"))
    assert not store.put_lut_row(NEW, row("conv", 9.0))
    assert store.get_lut_row(NEW, "conv").median_ms == 2.0
    assert store.missing_keys(NEW, ["conv"]) == []
    assert store.missing_keys(NEW, ["conv"], redo_statuses={"unstable"}) == ["conv"]
    assert store.put_lut_row(NEW, row("conv", 3.0), replace=True)
    got = store.get_lut_row(NEW, "conv")
    assert (got.median_ms, got.status) == (3.0, "ok")
    assert len(store.lut_dict(NEW)) == 1


def test_missing_keys_keeps_order_and_drops_duplicates(store: Store) -> None:
    store.put_lut_rows(NEW, [row("b"), row("d")])
    assert store.missing_keys(NEW, ["e", "a", "b", "c", "a", "d"]) == ["e", "a", "c"]


def test_runtime_versions_never_mix(store: Store) -> None:
    store.put_lut_rows(OLD, [row("conv", 1.0), row("pool", 0.2)])
    store.put_lut_rows(NEW, [row("conv", 5.0)])
    assert {k: r.median_ms for k, r in store.lut_dict(OLD).items()} == {"conv": 1.0, "pool": 0.2}
    assert {k: r.median_ms for k, r in store.lut_dict(NEW).items()} == {"conv": 5.0}
    assert store.missing_keys(NEW, ["conv", "pool"]) == ["pool"]
    infos = store.luts_for_device("pi")
    assert [(i.lut_id.runtime_version, i.rows) for i in infos] == [("1.30.0", 2), ("1.31.1", 1)]
    with pytest.raises(AmbiguousLutError, match="runtime_version") as err:
        store.find_lut("pi")
    assert "1.30.0" in str(err.value) and "1.31.1" in str(err.value)
    assert store.find_lut("pi", runtime_version="1.31.1") == NEW
    with pytest.raises(LutNotFoundError, match="1.29") as err:
        store.find_lut("pi", runtime_version="1.29")
    assert "1.31.1" in str(err.value)  # lists what exists


def test_find_lut_ignores_an_old_fingerprint_unless_asked(store: Store) -> None:
    store.put_lut_row(NEW, row("conv"))
    store.upsert_device("pi", fingerprint="fp-pi-after-os-upgrade")
    assert store.get_device("pi").first_seen <= store.get_device("pi").last_seen
    with pytest.raises(LutNotFoundError, match="fp-pi-after-os-upgrade"):
        store.find_lut("pi")
    assert store.find_lut("pi", fingerprint="fp-pi") == NEW


def test_unknown_device_lists_known_ones(store: Store) -> None:
    store.upsert_device("pixel3", fingerprint="fp-px")
    with pytest.raises(UnknownDeviceError, match=r"'pi4'.*did you mean 'pi'.*pi, pixel3"):
        store.get_device("pi4")
    with pytest.raises(UnknownDeviceError, match="upsert_device first"):
        store.put_lut_row(NEW, row("conv", device_key="jetson"))
    with pytest.raises(UnknownDeviceError):
        store.luts_for_device("jetson")
    assert store.lut_dict(NEW) == {}
    with pytest.raises(ValueError, match="not valid"):
        store.upsert_device("pi,4", fingerprint="fp")


def test_simulated_and_real_rows_never_share_a_lut(store: Store) -> None:
    store.put_lut_row(NEW, row("conv"))
    with pytest.raises(StoreError, match="simulated and real"):
        store.put_lut_row(NEW, row("pool", simulated=True))
    assert store.missing_keys(NEW, ["pool"]) == ["pool"]


def test_bad_rows_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="finite"):
        store.put_lut_row(NEW, row("conv", math.nan))
    with pytest.raises(ValueError, match="median_ms"):
        store.put_lut_row(NEW, LutRow("conv", "pi", n=0, median_ms=None))
    with pytest.raises(ValueError, match="op key"):
        store.put_lut_row(NEW, row(""))
    with pytest.raises(StoreError, match="twice"):
        store.put_lut_rows(NEW, [row("a"), row("a")])
    assert store.lut_dict(NEW) == {}
    # A failed measurement is a row without latency, so a resumed build does not retry it.
    assert store.put_lut_row(NEW, LutRow("odd_op", "pi", n=0, median_ms=None,
                                         status="unsupported_op"))
    assert store.missing_keys(NEW, ["odd_op"]) == []
    assert store.lut_dict(NEW, measured_only=True) == {}


def test_row_from_benchmark_result(store: Store) -> None:
    result = BenchmarkResult(
        status=Status.OK, backend="onnxruntime", runtime_version="1.31.1",
        device_fingerprint="fp-pi", op_key="conv", sha256="ab" * 32,
        latency=LatencyStats(n=40, median_ms=1.5, p90_ms=1.7, mean_ms=1.55, std_ms=0.05,
                             min_ms=1.4, max_ms=1.9, ci95_low_ms=1.48, ci95_high_ms=1.52,
                             cv=0.03),
        energy=EnergyResult(meter="ina219", meter_kind="external", gross_mj=3.0, net_mj=2.0,
                            net_ci95_low_mj=1.9, net_ci95_high_mj=2.1, idle_power_mw=500,
                            active_power_mw=900, windows=3),
        conditions_before=Conditions(temperatures_c={"cpu": 51.0}, governor="performance"))
    lut = LutId.from_result(result, config_hash(MeasureConfig()))
    assert lut.runtime_version == "1.31.1" and lut.fingerprint == "fp-pi"
    assert store.put_lut_row(lut, LutRow.from_result(result, device_key="pi"))
    got = store.get_lut_row(lut, "conv")
    assert (got.n, got.median_ms, got.energy_net_mj, got.status) == (40, 1.5, 2.0, "ok")
    assert got.conditions["before"]["temperatures_c"] == {"cpu": 51.0}
    failed = BenchmarkResult.failure(Status.UNSUPPORTED_OP, "no kernel for Foo")
    frow = LutRow.from_result(failed, device_key="pi", op_key="foo")
    assert frow.median_ms is None and frow.status == "unsupported_op" and not frow.measured


def test_lut_rows_dataframe(store: Store) -> None:
    store.put_lut_rows(NEW, [row("b", 2.0, conditions={"t": 40}), row("a", 1.0,
                                                                       energy_mj=0.5)])
    df = store.lut_rows(NEW)
    assert list(df["op_key"]) == ["a", "b"]
    assert df.loc[df.op_key == "b", "conditions"].iloc[0] == {"t": 40}
    assert df["median_ms"].tolist() == [1.0, 2.0]
    assert str(df["measured_at"].dt.tz) == "UTC"
    assert {"fingerprint", "runtime_version", "config_hash", "schema_version"} <= set(df.columns)


def test_rows_from_many_threads_all_land(store: Store) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(15):
                store.put_lut_row(NEW, row(f"op{t}_{i}", float(i)))
                store.missing_keys(NEW, [f"op{t}_{i}"])
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(store.lut_dict(NEW)) == 60


def test_killed_writer_loses_no_committed_row(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import os, signal, sys
        from hilnas.server.store import LutId, LutRow, Store
        store = Store.open(sys.argv[1])
        store.upsert_device("pi", fingerprint="fp-pi")
        lut = LutId("fp-pi", "onnxruntime", "1.31.1", "cfg1")
        for i in range(25):
            store.put_lut_row(lut, LutRow(f"op{i}", "pi", n=30, median_ms=float(i)))
        print("stored", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint, no atexit
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.strip() == "stored", proc.stderr
    assert proc.returncode != 0
    with Store.open(tmp_path, create=False) as store:
        rows = store.lut_dict(NEW)
        assert sorted(rows) == sorted(f"op{i}" for i in range(25))
        assert rows["op7"].median_ms == 7.0
        assert store.missing_keys(NEW, ["op24", "op25"]) == ["op25"]


def test_delete_lut_and_remove_device(store: Store) -> None:
    store.put_lut_rows(OLD, [row("a"), row("b")])
    store.put_lut_row(NEW, row("a"))
    with pytest.raises(StoreError, match="delete_rows"):
        store.remove_device("pi")
    assert store.delete_lut(OLD) == 2
    assert [i.lut_id for i in store.all_luts()] == [NEW]
    store.remove_device("pi", delete_rows=True)
    assert store.devices() == [] and store.all_luts() == []
