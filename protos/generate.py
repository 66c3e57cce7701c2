"""Regenerate the Python code for the proto contract.

    python -m hilnas.protos.generate          # rewrite protos/v1/agent_pb2*.py
    python -m hilnas.protos.generate --check  # exit 1 if the checked-in code is stale

protoc names Python modules after the path of the .proto below its include root, so the
.proto is staged under ``hilnas/protos/v1/`` in a temporary root: the generated stubs then
import ``hilnas.protos.v1.agent_pb2`` and need no hand edits.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "v1" / "agent.proto"
OUTPUTS = ("agent_pb2.py", "agent_pb2.pyi", "agent_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on agent.proto; write the generated files into ``out_dir``."""
    from grpc_tools import protoc  # dev extra only
    import grpc_tools

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        staged = root / "hilnas" / "protos" / "v1"
        staged.mkdir(parents=True)
        shutil.copy(PROTO, staged / "agent.proto")
        gen = root / "gen"
        gen.mkdir()
        well_known = Path(grpc_tools.__file__).parent / "_proto"
        rc = protoc.main([
            "protoc", f"-I{root}", f"-I{well_known}",
            f"--python_out={gen}", f"--pyi_out={gen}", f"--grpc_python_out={gen}",
            "hilnas/protos/v1/agent.proto",
        ])
        if rc != 0:
            raise RuntimeError(f"protoc failed with exit code {rc}")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in OUTPUTS:
            target = out_dir / name
            shutil.copy(gen / "hilnas" / "protos" / "v1" / name, target)
            written.append(target)
        return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the checked-in code is current")
    args = parser.parse_args(argv)
    if not args.check:
        for path in generate(HERE / "v1"):
            print(f"wrote {path}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = [p.name for p in fresh if not (HERE / "v1" / p.name).exists()
                 or (HERE / "v1" / p.name).read_bytes() != p.read_bytes()]
    if stale:
        print("stale generated code: " + ", ".join(stale) + " (run: python -m hilnas.protos.generate)", file=sys.stderr)
        return 1
    print("generated code is current")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
