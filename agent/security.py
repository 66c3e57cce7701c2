"""Who may talk to an agent: loopback by default, a token beyond it, TLS when configured.

The token travels as call metadata (``authorization: Bearer <token>``) and is compared in
constant time. Health checks stay open so that stock probes (grpc_health_probe, Kubernetes) work
without the secret; everything else, reflection included, needs the token when one is set.
"""
from __future__ import annotations

import hmac
import ipaddress
import socket
from pathlib import Path

import grpc

TOKEN_METADATA_KEY = "authorization"
_OPEN_METHODS = ("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and names that resolve only to those."""
    h = host.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        pass
    try:
        addrs = {ai[4][0] for ai in socket.getaddrinfo(h, None)}
    except OSError:
        return False
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def check_bind(host: str, token: str | None, insecure: bool) -> None:
    """Refuse to listen beyond loopback without a token unless told ``insecure``."""
    if not is_loopback(host) and not token and not insecure:
        raise ValueError(
            f"refusing to listen on {host} without a token: anyone on the network could run models on this "
            "device. Pass --token-file FILE (or --token), or --insecure if this network is yours alone.")


MIN_TOKEN_CHARS = 16
_MAKE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))' > ~/.hilnas-token"


def check_token(token: str, source: str = "--token") -> str:
    """The token if it is usable: at least 16 characters, no whitespace (it travels in one
    metadata value), else ValueError saying how to make one."""
    if len(token) < MIN_TOKEN_CHARS or any(ch.isspace() for ch in token) or not token.isprintable():
        what = "has whitespace or control characters" if len(token) >= MIN_TOKEN_CHARS else \
            f"is too short ({len(token)} characters; use at least {MIN_TOKEN_CHARS})"
        raise ValueError(f"the token from {source} {what}: make one with `{_MAKE_TOKEN}` and pass "
                         "--token-file ~/.hilnas-token")
    return token


def read_token_file(path: str | Path) -> str:
    p = Path(path)
    try:
        token = p.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read token file {p}: {getattr(err, 'strerror', None) or err}") from None
    return check_token(token, f"token file {p}")


def plaintext_token_warning(host: str, token: str | None, tls: bool) -> str | None:
    """What to warn about at start when a token would cross a network in clear text, or None."""
    if not token or tls or is_loopback(host):
        return None
    return (f"WARNING: serving on {host} with a token but without TLS: the token and every model travel in "
            "clear text and anyone on the path can read and reuse them. Add --tls-cert/--tls-key "
            "(docs/deploy.md), or use this only on a network you control.")


class TokenInterceptor(grpc.ServerInterceptor):
    """Rejects calls without the right bearer token with UNAUTHENTICATED."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method in _OPEN_METHODS:
            return continuation(handler_call_details)
        sent = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == TOKEN_METADATA_KEY:
                sent = value if isinstance(value, str) else value.decode("utf-8", "replace")
        if hmac.compare_digest(sent.encode(), self._expected):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        message = "missing token" if not sent else "wrong token"
        return _deny(handler, message)


def _deny(handler, message: str):
    def abort(_request_or_iterator, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler is None:
        return None
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)


def server_credentials(cert: str, key: str, client_ca: str | None) -> grpc.ServerCredentials:
    """TLS with a server certificate; with ``client_ca``, clients must present a certificate too."""
    def read(path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as err:
            raise ValueError(f"cannot read TLS file {path}: {err.strerror or err}") from None

    return grpc.ssl_server_credentials(
        [(read(key), read(cert))], root_certificates=read(client_ca) if client_ca else None,
        require_client_auth=bool(client_ca))
