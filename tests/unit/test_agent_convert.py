from hilnas.agent import convert
from hilnas.agent.config import MeasureConfig
from hilnas.agent.results import (BenchmarkRequest, BenchmarkResult, Conditions, DeviceInfo, EnergyMeterInfo,
                                  EnergyResult, LatencyStats, ModelFormat, Status)
from hilnas.protos.v1 import agent_pb2 as pb


def test_request_round_trip():
    req = BenchmarkRequest(sha256="a" * 64, model=b"bytes", format=ModelFormat.TFLITE, backend="tflite",
                           config=MeasureConfig(warmup_runs=3, min_runs=7, min_seconds=0.2, threads=2,
                                                cpu_affinity=(0, 1), energy=True, remeasure_unstable=False,
                                                timeout_s=9.0, energy_window_s=2.0, energy_windows=7,
                                                energy_idle_s=1.5),
                           request_id="r1", op_key="k|cin=1")
    back = convert.request_from_proto(pb.BenchmarkRequest.FromString(convert.request_to_proto(req).SerializeToString()))
    assert back == req


def test_absent_config_means_defaults_and_negative_is_refused():
    req = convert.request_from_proto(pb.BenchmarkRequest(sha256="b" * 64))
    assert req.config == MeasureConfig()
    assert req.format is ModelFormat.ONNX
    import pytest
    with pytest.raises(ValueError):
        convert.request_from_proto(pb.BenchmarkRequest(sha256="b" * 64, config=pb.MeasurementConfig(min_seconds=-1)))
    with pytest.raises(ValueError, match="format"):
        convert.request_from_proto(pb.BenchmarkRequest(sha256="b" * 64, format=99))


def test_result_round_trip():
    stats = LatencyStats(n=3, median_ms=1.0, p90_ms=1.2, mean_ms=1.1, std_ms=0.1, min_ms=0.9, max_ms=1.3,
                         ci95_low_ms=0.9, ci95_high_ms=1.3, cv=0.09, robust_cv=0.05)
    energy = EnergyResult(meter="simulated", meter_kind="simulated", gross_mj=2.0, net_mj=1.5, net_ci95_low_mj=1.4,
                          net_ci95_high_mj=1.6, idle_power_mw=500.0, active_power_mw=2000.0, windows=5,
                          flags=("x",), note="why")
    cond = Conditions(timestamp_s=5.0, temperatures_c={"cpu": 50.0}, cpu_freq_khz={"0": 1.5e6}, governor="ondemand",
                      throttled_bits=0x4, throttled=True, load_avg_1m=0.5, power_source="ac",
                      runtime_versions={"python": "3.11.7", "onnxruntime": "1.31.1"}, thread_affinity=(0, 2))
    res = BenchmarkResult(status=Status.UNSTABLE, error="cv", request_id="r", sha256="c" * 64, backend="onnxruntime",
                          runtime_version="onnxruntime 1", samples_ms=(1.0, 1.1, 0.9), latency=stats, energy=energy,
                          conditions_before=cond, conditions_after=cond, simulated=True, remeasured=True,
                          config=MeasureConfig(min_runs=3), device_fingerprint="f", measure_wall_s=0.1,
                          total_wall_s=0.2, op_key="k")
    assert convert.result_from_proto(pb.BenchmarkResult.FromString(convert.result_to_proto(res).SerializeToString())) == res


def test_device_info_round_trip_and_json():
    info = DeviceInfo(fingerprint="f", hostname="h", cpu_model="c", cpu_cores=4, memory_bytes=1 << 30, os="Linux",
                      backends=("onnxruntime",), runtime_versions={"onnxruntime": "1.31.1"}, agent_version="0.1.0",
                      energy_meters=(EnergyMeterInfo("none", "none", "none", 0.0, True),), default_backend="onnxruntime",
                      max_model_bytes=10, queue_size=2, max_message_bytes=20)
    assert convert.device_info_from_proto(convert.device_info_to_proto(info)) == info
    js = convert.to_jsonable(info)
    assert js["backends"] == ["onnxruntime"] and js["energy_meters"][0]["kind"] == "none"


def test_energy_protocol_config_out_of_range_is_refused():
    import pytest
    for bad in (dict(energy_window_s=-1.0), dict(energy_idle_s=61.0), dict(energy_windows=101)):
        with pytest.raises(ValueError, match="energy_"):
            convert.config_from_proto(pb.MeasurementConfig(energy=True, **bad))


def test_nan_energy_survives_the_wire():
    import math
    nan = math.nan
    e = EnergyResult(meter="none", meter_kind="none", gross_mj=nan, net_mj=nan, net_ci95_low_mj=nan,
                     net_ci95_high_mj=nan, idle_power_mw=nan, active_power_mw=nan, windows=0,
                     flags=("meter_unavailable",), note="no meter")
    back = convert.result_from_proto(pb.BenchmarkResult.FromString(
        convert.result_to_proto(BenchmarkResult(status=Status.OK, energy=e)).SerializeToString())).energy
    assert math.isnan(back.net_mj) and back.flags == e.flags and back.note == "no meter"
