# -*- test-case-name: tests.test_firmware_updater,tests.test_firmware_e2e -*-
"""Compile uploaded sources with the configured command (``--compile-command``).

The command is a template run by ``/bin/sh -c`` in a fresh temporary
directory; ``{src}`` is replaced by the directory holding the uploaded
files, ``{out}`` by the path where the command must leave the binary, and
``{platform}`` / ``{platform_id}`` by the target device's platform name
(``core``, ``photon``, ``p1``, ``electron`` or the number) and id.  Values are
shell-quoted.  The command runs as a child process of the reactor (never
blocking it), in its own process group, so that on timeout the whole group
(make, gcc, ...) is killed.  Exit status 0 and a non-empty ``{out}`` file mean
success; anything else is a :class:`CompileError` carrying the command's
output (stdout and stderr interleaved, capped).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import sys
import tempfile

from twisted.internet import defer, protocol
from twisted.logger import Logger

from twisted_spark.platforms import name_of

#: Output kept from the compiler (the tail matters most: keep head and tail).
MAX_OUTPUT = 64 * 1024
_SHIM = "import os, sys; os.setsid(); os.execv('/bin/sh', ['sh', '-c', sys.argv[1]])"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]")
#: The longest file name (one path component) Linux file systems accept.
MAX_FILENAME_BYTES = 255


class FileNameTooLong(ValueError):
    """An uploaded file's name is longer than a file system allows (→ 400)."""


class CompileError(Exception):
    """The compile command failed; ``output`` is what it printed."""

    def __init__(self, message, output=""):
        super().__init__(message)
        self.output = output


def render_command(template, src, out, platform_id=None):
    """The shell command for ``template`` (raises ValueError on a bad template)."""
    name = name_of(platform_id)
    try:
        return template.format(
            src=shlex.quote(str(src)),
            out=shlex.quote(str(out)),
            platform=shlex.quote(name) if name else "''",
            platform_id=shlex.quote(str(platform_id if platform_id is not None else "")) or "''",
        )
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"bad compile command template {template!r}: {e}") from None


def _base_name(name):
    """The last path component of an uploaded file name (``/`` or ``\\``)."""
    return os.path.basename((name or "").replace("\\", "/"))


def check_filenames(names):
    """Raise :class:`FileNameTooLong` for a name over :data:`MAX_FILENAME_BYTES`.

    Only the last path component becomes a file, so that is what is
    measured, in UTF-8 bytes as sent (before :func:`safe_filename`).
    """
    for name in names:
        size = len(_base_name(name).encode("utf-8", "surrogatepass"))
        if size > MAX_FILENAME_BYTES:
            shown = _base_name(name)[:40].encode("utf-8", "replace").decode("utf-8")
            raise FileNameTooLong(
                f"The file name {shown + '...'!r} is {size} bytes long; "
                f"file names may be at most {MAX_FILENAME_BYTES} bytes."
            )


def safe_filename(name, taken):
    """A plain file name for an uploaded file (no directories), unique in ``taken``.

    ASCII only, at most :data:`MAX_FILENAME_BYTES` long even with the
    ``<n>-`` prefix that makes it unique (the stem is cut, the extension kept).
    """
    base = _base_name(name) or "source.cpp"
    base = _SAFE_NAME.sub("_", base).lstrip(".") or "source.cpp"
    candidate, n = base[:MAX_FILENAME_BYTES], 1
    while candidate in taken:
        n += 1
        prefix = f"{n}-"
        stem, dot, extension = base.rpartition(".")
        if not dot:
            stem, extension = base, ""
        room = MAX_FILENAME_BYTES - len(prefix) - len(dot + extension)
        candidate = f"{prefix}{stem[:max(room, 1)]}{dot}{extension}"[:MAX_FILENAME_BYTES]
    taken.add(candidate)
    return candidate


class _Collect(protocol.ProcessProtocol):
    def __init__(self):
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0
        self.ended = defer.Deferred()

    def _add(self, data):
        room = MAX_OUTPUT // 2 - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        if len(self.tail) > MAX_OUTPUT // 2:
            cut = len(self.tail) - MAX_OUTPUT // 2
            self.dropped += cut
            del self.tail[:cut]

    def outReceived(self, data):
        self._add(data)

    def errReceived(self, data):
        self._add(data)

    def processEnded(self, reason):
        self.ended.callback(getattr(reason.value, "exitCode", None))

    def output(self):
        middle = f"\n[... {self.dropped} bytes of output left out ...]\n" if self.dropped else ""
        return (bytes(self.head) + middle.encode() + bytes(self.tail)).decode("utf-8", "replace")


class Compiler:
    """Runs the compile command template (see the module docstring).

    :param template: the command with ``{src}`` and ``{out}`` (and optionally
        ``{platform}``, ``{platform_id}``).
    :param timeout: seconds before the process group is killed.
    :param reactor: ``IReactorProcess`` + ``IReactorTime``.
    :param temp_root: parent of the per-compile temporary directories.
    """

    log = Logger()

    def __init__(self, template, timeout, reactor, temp_root=None):
        render_command(template, "src", "out")  # fail early on a bad template
        self.template = template
        self.timeout = timeout
        self.reactor = reactor
        self.temp_root = temp_root

    def compile(self, files, platform_id=None):
        """Compile ``files`` (list of (filename, bytes)) -> Deferred[bytes].

        Fails with :class:`FileNameTooLong` before any work, or :class:`CompileError`.
        """
        try:
            check_filenames(name for name, _ in files)
        except FileNameTooLong:
            return defer.fail()
        return defer.ensureDeferred(self._compile(files, platform_id))

    async def _compile(self, files, platform_id):
        if self.temp_root is not None:
            os.makedirs(self.temp_root, mode=0o700, exist_ok=True)
        work = tempfile.mkdtemp(prefix="spark-compile-", dir=self.temp_root)
        try:
            src = os.path.join(work, "src")
            os.mkdir(src)
            taken = set()
            for name, data in files:
                with open(os.path.join(src, safe_filename(name, taken)), "wb") as f:
                    f.write(data)
            out = os.path.join(work, "firmware.bin")
            command = render_command(self.template, src, out, platform_id)
            self.log.info("Compiling {n} uploaded files: {command}", n=len(files), command=command)
            collected = _Collect()
            process = self.reactor.spawnProcess(
                collected,
                sys.executable,
                [sys.executable, "-c", _SHIM, command],
                env=dict(os.environ),
                path=src,
            )
            timed_out = []

            def kill():
                timed_out.append(True)
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except (OSError, TypeError):
                    try:
                        process.signalProcess("KILL")
                    except Exception:
                        pass

            timer = self.reactor.callLater(self.timeout, kill)
            try:
                code = await collected.ended
            finally:
                if timer.active():
                    timer.cancel()
            output = collected.output()
            if timed_out:
                raise CompileError(
                    f"The compile command did not finish within {self.timeout:g} seconds.",
                    output + f"\n[compile command killed after {self.timeout:g} seconds]\n",
                )
            if code != 0:
                raise CompileError(f"The compile command failed (exit status {code}).", output)
            try:
                with open(out, "rb") as f:
                    binary = f.read()
            except FileNotFoundError:
                binary = b""
            if not binary:
                raise CompileError(
                    "The compile command produced no binary.",
                    output + "\n[the compile command exited 0 but wrote no binary]\n",
                )
            return binary
        finally:
            shutil.rmtree(work, ignore_errors=True)
