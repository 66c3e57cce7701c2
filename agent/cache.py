"""The agent's model cache: validated model files on disk, named by their sha256, so a client can
re-measure a model by hash alone. Least recently used models are evicted past a byte budget."""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from hilnas.agent.device import AgentError, StoredModel
from hilnas.agent.results import ModelFormat, Status
from hilnas.agent.validate import check_sha256, is_sha256

log = logging.getLogger(__name__)

_SUFFIX = {ModelFormat.ONNX: ".onnx", ModelFormat.TFLITE: ".tflite"}
_FORMAT = {suffix: fmt for fmt, suffix in _SUFFIX.items()}
_FILE_RE = re.compile(r"([0-9a-f]{64})(\.onnx|\.tflite)")
_TMP_PREFIX = ".tmp-"
_STALE_TMP_S = 3600.0  # another agent sharing the folder may be writing a younger one


@dataclass
class _Entry:
    fmt: ModelFormat
    size: int
    mtime_ns: int   # of the file when its hash was last confirmed; a change means re-hash
    verified: bool  # False for files found on disk at start-up, until their hash is checked


class ModelCache:
    """Model files keyed by sha256 under ``root``; LRU eviction keeps the total under
    ``max_bytes`` (the newest model is always kept, even if it alone is larger).

    File names are built only from a validated lowercase hex hash, never from client text.
    Files found at start-up (or changed on disk since) are re-hashed when first read, and a
    file whose bytes no longer match its name is deleted. Thread-safe.
    """

    def __init__(self, root: Path, max_bytes: int):
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._total = 0
        self._scan()

    # -- public ---------------------------------------------------------------------------

    def put(self, sha256: str, data: bytes, fmt: ModelFormat) -> StoredModel:
        """Store ``data`` (whose hash must be ``sha256``) and return where it lives."""
        check_sha256(sha256)
        got = hashlib.sha256(data).hexdigest()
        if got != sha256:
            raise AgentError(Status.HASH_MISMATCH, f"sha256 mismatch: expected {sha256}, got {got}")
        with self._lock:
            entry = self._entries.get(sha256)
            if entry is not None and entry.fmt == fmt and self._unchanged(sha256, entry):
                self._touch(sha256, entry)
                return self._stored(sha256, entry)
            if entry is not None:
                self._drop(sha256)
            self._write(sha256, data, fmt)
            self._evict(keep=sha256)
            return self._stored(sha256, self._entries[sha256])

    def get(self, sha256: str) -> StoredModel | None:
        """The cached model with this hash, or None (absent, evicted, deleted or tampered)."""
        if not is_sha256(sha256):
            return None
        with self._lock:
            entry = self._entries.get(sha256)
            if entry is None:
                return None
            if not self._unchanged(sha256, entry) or not entry.verified:
                if not self._verify(sha256, entry):
                    return None
            self._touch(sha256, entry)
            return self._stored(sha256, entry)

    def discard(self, sha256: str) -> None:
        """Remove a model from the cache (no error if it is not there)."""
        with self._lock:
            if sha256 in self._entries:
                self._drop(sha256)

    def __contains__(self, sha256: object) -> bool:
        with self._lock:
            return sha256 in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return self._total

    # -- internals (called with the lock held) --------------------------------------------

    def _path(self, sha256: str, fmt: ModelFormat) -> Path:
        return self.root / f"{sha256}{_SUFFIX[fmt]}"

    def _stored(self, sha256: str, entry: _Entry) -> StoredModel:
        return StoredModel(sha256=sha256, path=self._path(sha256, entry.fmt), format=entry.fmt,
                           size_bytes=entry.size)

    def _scan(self) -> None:
        """Index the files a previous run left; oldest access first, so LRU order survives."""
        if not self.root.is_dir():
            return
        found, seen = [], set()
        for p in self.root.iterdir():
            m = _FILE_RE.fullmatch(p.name)
            if not m or m.group(1) in seen:
                continue
            try:
                st = p.stat()
            except OSError:
                continue
            seen.add(m.group(1))
            found.append((st.st_mtime_ns, p.name, m.group(1), _FORMAT[m.group(2)], st))
        for mtime_ns, _, sha, fmt, st in sorted(found):
            self._entries[sha] = _Entry(fmt=fmt, size=st.st_size, mtime_ns=mtime_ns, verified=False)
            self._total += st.st_size

    def _unchanged(self, sha256: str, entry: _Entry) -> bool:
        try:
            st = self._path(sha256, entry.fmt).stat()
        except OSError:
            return False
        return st.st_size == entry.size and st.st_mtime_ns == entry.mtime_ns

    def _verify(self, sha256: str, entry: _Entry) -> bool:
        path = self._path(sha256, entry.fmt)
        try:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            st = path.stat()
        except OSError:
            self._drop(sha256)
            return False
        if digest.hexdigest() != sha256:
            log.warning("cached model %s does not match its hash; deleting it", path)
            self._drop(sha256)
            return False
        self._total += st.st_size - entry.size
        entry.size, entry.mtime_ns, entry.verified = st.st_size, st.st_mtime_ns, True
        return True

    def _touch(self, sha256: str, entry: _Entry) -> None:
        self._entries.move_to_end(sha256)
        path = self._path(sha256, entry.fmt)
        try:  # the file's mtime carries the LRU order across restarts
            os.utime(path)
            entry.mtime_ns = path.stat().st_mtime_ns
        except OSError:
            pass

    def _write(self, sha256: str, data: bytes, fmt: ModelFormat) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._remove_stale_tmp()
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=_TMP_PREFIX, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            # No fsync: a file torn by a power cut fails its hash check after restart and is dropped.
            os.replace(tmp, self._path(sha256, fmt))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        st = self._path(sha256, fmt).stat()
        self._entries[sha256] = _Entry(fmt=fmt, size=st.st_size, mtime_ns=st.st_mtime_ns, verified=True)
        self._total += st.st_size

    def _drop(self, sha256: str) -> None:
        entry = self._entries.pop(sha256)
        self._total -= entry.size
        try:
            self._path(sha256, entry.fmt).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not delete cached model %s: %s", sha256, exc)

    def _evict(self, keep: str) -> None:
        while self._total > self.max_bytes and len(self._entries) > 1:
            oldest = next(iter(self._entries))
            if oldest == keep:
                break
            self._drop(oldest)

    def _remove_stale_tmp(self) -> None:
        now = time.time()
        for p in self.root.glob(_TMP_PREFIX + "*"):
            try:
                if now - p.stat().st_mtime > _STALE_TMP_S:
                    p.unlink()
            except OSError:
                pass
