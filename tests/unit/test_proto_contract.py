"""The contract files: the shipped health.proto is the one the agent serves, and every
MeasurementConfig field says its default and what 0 means."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

PROTOS = Path(__file__).resolve().parents[2] / "protos"


def _compile(rel: str):
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        assert protoc.main(["protoc", f"-I{PROTOS}", f"--descriptor_set_out={out}", rel]) == 0
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return fds.file[0]


def test_shipped_health_proto_matches_the_served_service():
    from google.protobuf import descriptor_pb2
    from grpc_health.v1 import health_pb2

    served = descriptor_pb2.FileDescriptorProto()
    health_pb2.DESCRIPTOR.CopyToProto(served)
    shipped = _compile("grpc/health/v1/health.proto")
    for d in (served, shipped):
        d.ClearField("name")
        d.ClearField("source_code_info")
        for message in [*d.message_type, *(n for m in d.message_type for n in m.nested_type)]:
            for f in message.field:
                f.ClearField("json_name")   # protoc fills it in; the runtime descriptor leaves it out
    assert shipped == served


def test_every_measurement_config_field_documents_its_default():
    text = (PROTOS / "v1" / "agent.proto").read_text()
    body = re.search(r"message MeasurementConfig \{(.*?)\n\}", text, re.S).group(1)
    fields = [line for line in body.splitlines() if re.match(r"\s*(optional|repeated)\s", line)]
    assert len(fields) == 14
    for line in fields:
        if line.strip().startswith("optional"):
            assert "unset" in line, line            # what an absent field means
        if line.strip().startswith("optional") and ("uint32" in line or "double" in line):
            assert re.search(r"\b0\b", line.split("//", 1)[1]), line   # and what 0 means
    assert "Bearer" in text and "authorization" in text


@pytest.mark.parametrize("rel", ["v1/agent.proto", "grpc/health/v1/health.proto"])
def test_protos_compile_from_the_protos_folder_alone(rel):
    assert _compile(rel).package
