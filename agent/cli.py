"""``hilnas-agent``: run a measurement agent on this device.

Only argparse is imported at module level, so ``hilnas-agent --help`` stays fast on a Pi.
"""
from __future__ import annotations

import argparse
import json
import sys

EPILOG = """\
examples:
  hilnas-agent serve                                   # this host, 127.0.0.1:50061
  hilnas-agent serve --host 0.0.0.0 --token-file ~/.hilnas-token
  hilnas-agent serve --simulate raspi4 --port 0        # a simulated Raspberry Pi 4
  hilnas-agent serve --simulate raspi4 --realtime      # ... that takes the time it reports
  hilnas-agent describe                                # this device as JSON
  hilnas-agent selftest                                # measure a built-in model, no network

Listening beyond loopback needs a token (or an explicit --insecure). See docs/deploy.md for a
systemd unit (Raspberry Pi) and Termux:Boot (Android).
"""


def _limits_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("limits")
    g.add_argument("--max-model-mb", type=float, default=256, help="largest model accepted, MiB (default 256)")
    g.add_argument("--queue-size", type=int, default=16,
                   help="requests that may wait for the measurement slot; more are refused (default 16)")
    g.add_argument("--timeout", type=float, default=120.0,
                   help="default wall-time limit per model, s (default 120)")
    g.add_argument("--worker-memory-mb", type=int, default=4096,
                   help="address-space limit of the worker process, MiB (default 4096)")
    g.add_argument("--worker-recycle-mb", type=int, default=512,
                   help="replace the worker when it stays above this resident memory after a model, MiB; "
                        "0 = never (default 512)")
    g.add_argument("--max-nodes", type=int, default=20000, help="largest graph accepted, in operators (default 20000)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hilnas-agent", description="Measure what neural networks really cost on this device, over gRPC.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="store_true", help="print the agent version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("serve", help="serve the DeviceAgent gRPC API", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    s.add_argument("--port", type=int, default=50061, help="port (default 50061; 0 picks a free one)")
    tok = s.add_mutually_exclusive_group()
    tok.add_argument("--token", help="bearer token clients must send, at least 16 characters without whitespace "
                                      "(prefer --token-file: argv is visible to ps); default: none")
    tok.add_argument("--token-file", help="file holding the bearer token (same rules); default: none. Without TLS "
                                          "the token travels in clear text")
    s.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without a token")
    s.add_argument("--tls-cert", help="server certificate chain (PEM)")
    s.add_argument("--tls-key", help="server private key (PEM)")
    s.add_argument("--tls-client-ca", help="require client certificates signed by this CA (PEM)")
    s.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "tflite"],
                   help="default backend (default onnxruntime)")
    s.add_argument("--simulate", metavar="PROFILE",
                   help="serve a simulated device instead of this host (profile name, e.g. raspi4, or a .toml path)")
    s.add_argument("--seed", type=int, default=0, help="noise seed of the simulated device (default 0)")
    s.add_argument("--realtime", action="store_true",
                   help="with --simulate: each measurement takes the time it reports (warm-up + runs, then the "
                        "cooldown) while holding the measurement slot, as a real board would; default: off "
                        "(answers at once)")
    s.add_argument("--cache-dir", help="model cache folder (default ~/.cache/hilnas-agent/models)")
    s.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    _limits_args(s)

    sub.add_parser("describe", help="print this device's description as JSON")

    t = sub.add_parser("selftest", help="measure a small built-in model locally (no network)")
    t.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "tflite"])
    t.add_argument("--simulate", metavar="PROFILE", help="run the self-test on a simulated device")
    t.add_argument("--min-runs", type=int, default=30)
    t.add_argument("--min-seconds", type=float, default=0.5)
    t.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _serve_config(args):
    from hilnas.agent.config import AgentLimits, ServeConfig
    from hilnas.agent.security import read_token_file

    token = args.token
    if args.token_file:
        token = read_token_file(args.token_file)
    limits = AgentLimits(
        max_model_bytes=int(args.max_model_mb * 1024 * 1024),
        max_message_bytes=int(args.max_model_mb * 1024 * 1024) + 16 * 1024 * 1024,
        max_nodes=args.max_nodes, worker_timeout_s=args.timeout, worker_memory_mb=args.worker_memory_mb,
        worker_recycle_mb=args.worker_recycle_mb, queue_size=args.queue_size)
    if args.queue_size < 0 or args.timeout <= 0 or args.max_model_mb <= 0:
        raise ValueError("--queue-size must be >= 0, --timeout and --max-model-mb > 0")
    if args.realtime and not args.simulate:
        raise ValueError("--realtime needs --simulate PROFILE (a real device always takes its time): "
                         "hilnas-agent serve --simulate raspi4 --realtime")
    return ServeConfig(host=args.host, port=args.port, token=token, insecure=args.insecure, tls_cert=args.tls_cert,
                       tls_key=args.tls_key, tls_client_ca=args.tls_client_ca, backend=args.backend,
                       simulate=args.simulate, seed=args.seed, realtime=args.realtime, cache_dir=args.cache_dir,
                       limits=limits)


def cmd_serve(args) -> int:
    import logging

    from hilnas.agent.server import serve

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(_serve_config(args))
    return 0


def cmd_describe(args) -> int:
    from hilnas.agent.config import AgentLimits
    from hilnas.agent.convert import to_jsonable
    from hilnas.agent.host import HostDevice

    device = HostDevice(AgentLimits())
    try:
        print(json.dumps(to_jsonable(device.info()), indent=2))
    finally:
        device.close()
    return 0


def cmd_selftest(args) -> int:
    import tempfile
    from pathlib import Path

    from hilnas.agent.cache import ModelCache
    from hilnas.agent.config import AgentLimits, MeasureConfig
    from hilnas.agent.convert import to_jsonable
    from hilnas.agent.core import Agent
    from hilnas.agent.results import BenchmarkRequest, ModelFormat
    import hashlib

    from hilnas.agent.config import ServeConfig
    from hilnas.agent.server import make_device

    limits = AgentLimits()
    device = make_device(ServeConfig(simulate=args.simulate, backend=args.backend, limits=limits))
    backend = "simulated" if args.simulate else args.backend
    if backend == "tflite":
        from hilnas.agent.backends.tflite_builder import build_fc_model

        model, fmt = build_fc_model(64, 64, seed=0), ModelFormat.TFLITE
    else:
        from hilnas.agent.backends.onnx_builder import build_mlp_model

        model, fmt = build_mlp_model(), ModelFormat.ONNX
    with tempfile.TemporaryDirectory() as tmp:
        agent = Agent(device, ModelCache(Path(tmp), limits.cache_bytes), limits, default_backend=backend)
        try:
            result = agent.benchmark(BenchmarkRequest(
                sha256=hashlib.sha256(model).hexdigest(), model=model, format=fmt, backend=backend,
                config=MeasureConfig(min_runs=args.min_runs, min_seconds=args.min_seconds)))
        finally:
            agent.close()
    if args.json:
        print(json.dumps(to_jsonable(result), indent=2))
    elif result.latency is not None:
        s = result.latency
        print(f"selftest {result.status.name}: {backend} ({result.runtime_version}) median {s.median_ms:.4f} ms, "
              f"p90 {s.p90_ms:.4f} ms, 95% CI [{s.ci95_low_ms:.4f}, {s.ci95_high_ms:.4f}] ms over n={s.n}")
    else:
        print(f"selftest {result.status.name}: {result.error}")
    return 0 if result.status.measured else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from hilnas import __version__

        print(f"hilnas-agent {__version__}")
        return 0
    if not args.command:
        parser.print_help()
        return 2
    try:
        return {"serve": cmd_serve, "describe": cmd_describe, "selftest": cmd_selftest}[args.command](args)
    except (ValueError, OSError) as err:
        print(f"hilnas-agent: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
