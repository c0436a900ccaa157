# -*- test-case-name: tests.test_firmware_updater -*-
"""Uploaded and compiled firmware images, kept as ``<data_dir>/firmware/<id>.bin``.

Ids are 24 random hex characters (:mod:`secrets`).  The store is capped by
count and total size: storing a new image evicts the oldest ones (by
modification time) beyond either cap.  File work runs in the ``files``
executor when one is given, so the reactor never blocks on disk.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from twisted.internet import defer

MIB = 1024 * 1024
IMAGE_ID = re.compile(r"[0-9a-f]{24}")


class ImageStore:
    """Firmware images on disk (see the module docstring).

    :param directory: where ``<id>.bin`` files live (created 0700).
    :param max_count: images kept at most.
    :param max_bytes: total bytes kept at most (the newest image is always kept).
    :param executor: the ``IExecutor`` running file work; ``None`` = inline.
    """

    def __init__(self, directory, max_count=100, max_bytes=64 * MIB, executor=None):
        self.directory = Path(directory)
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.executor = executor

    def _run(self, fn, *args):
        if self.executor is None:
            return defer.maybeDeferred(fn, *args)
        return self.executor.run(fn, *args)

    def path(self, image_id):
        if not IMAGE_ID.fullmatch(image_id or ""):
            raise KeyError(image_id)
        return self.directory / f"{image_id}.bin"

    def put(self, data):
        """Store ``data`` -> Deferred[id]."""
        return self._run(self._put, bytes(data))

    def get(self, image_id):
        """Deferred[bytes | None] of a stored image."""
        return self._run(self._get, image_id)

    def _files(self):
        if not self.directory.is_dir():
            return []
        files = [p for p in self.directory.glob("*.bin") if IMAGE_ID.fullmatch(p.stem)]
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def _put(self, data):
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        image_id = secrets.token_hex(12)
        target = self.path(image_id)
        temporary = target.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temporary, target)
        self._evict(keep=target)
        return image_id

    def _evict(self, keep):
        files = [p for p in self._files() if p != keep]
        sizes = {p: p.stat().st_size for p in files}
        total = sum(sizes.values()) + keep.stat().st_size
        count = len(files) + 1
        for old in files:  # oldest first
            if count <= self.max_count and total <= self.max_bytes:
                break
            try:
                old.unlink()
            except FileNotFoundError:
                pass
            count -= 1
            total -= sizes[old]

    def _get(self, image_id):
        try:
            return self.path(image_id).read_bytes()
        except (KeyError, FileNotFoundError):
            return None
