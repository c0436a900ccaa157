# -*- test-case-name: tests.test_firmware_flasher -*-
"""What every OTA transfer shares: its state, its inbox and how it waits.

A transfer waits for one of three things at a time: the outcome of a
request it sent, a notification (a ChunkMissed or the device's UpdateDone
arrived, or the transfer was aborted), or a timeout.  :meth:`Transfer.wait`
races a :class:`~twisted.internet.defer.DeferredQueue` of wake-ups against
``deferLater`` on the injected clock; what a notification reports is kept
in the transfer's state (``missed``, ``device_done``), so a wake-up that
finds nobody waiting is simply dropped.  Request Deferreds belong to the
session and are never cancelled: their outcome is kept on a
:class:`Tracked` until someone looks.
"""

from __future__ import annotations

from twisted.internet import defer, task
from twisted.logger import Logger

from twisted_spark.coap.kinds import MessageKind
from twisted_spark.coap.payloads import parse_chunk_missed
from twisted_spark.errors import DeviceNotConnected, DeviceTimeout
from twisted_spark.firmware.plan import FlashError


class Tracked:
    """The outcome of one request, once it has one: ``("reply", result)`` or
    ``("error", exception)``."""

    __slots__ = ("outcome",)

    def __init__(self):
        self.outcome = None


class Stopped(Exception):
    """Internal: the transfer was aborted (its ``error`` says why)."""


class Transfer:
    """State, inbox and waiting of one transfer to ``channel`` (an IDeviceChannel).

    :ivar missed: ChunkMissed index lists not served yet.
    :ivar device_done: the device sent its own UpdateDone.
    :ivar error: why the transfer was stopped from outside, or ``None``.
    """

    log = Logger()

    def __init__(self, channel, image, clock, options):
        self.channel = channel
        self.image = bytes(image)
        self.clock = clock
        self.options = options
        #: Set once the transfer is planned (after UpdateBegin).
        self.chunk_size = 0
        self.chunks: list[bytes] = []
        self.crcs: list[int] = []
        #: The token every fast chunk carries (reserved on the channel).
        self.token = None
        self.missed = []
        self.device_done = False
        self.error = None
        self.resent = 0
        self.bad_crc = 0
        self.chunk_missed = 0
        self._wakeups: defer.DeferredQueue[None] = defer.DeferredQueue()
        self._logged = -1

    # -- inputs from outside ------------------------------------------------------

    def message_received(self, kind, msg):
        """The channel's update handler: ChunkMissed and the device's UpdateDone
        (the session has acknowledged them)."""
        if kind is MessageKind.CHUNK_MISSED:
            try:
                indexes = parse_chunk_missed(msg.payload)
            except Exception:
                self.log.info("Ignoring a malformed ChunkMissed from {id}",
                              id=self.channel.device_id)
                return
            self.missed.append(indexes)
            self.wake()
        elif kind is MessageKind.UPDATE_DONE:
            self.device_done = True
            self.wake()

    def abort(self, error):
        """Stop the transfer with ``error`` (a :class:`FlashError`)."""
        if self.error is None:
            self.error = error
        self.wake()

    def wake(self):
        """Wake the transfer if it waits (the news itself is in its state)."""
        if self._wakeups.waiting:
            self._wakeups.put(None)

    # -- waiting ----------------------------------------------------------------

    def check(self):
        """Raise :class:`Stopped` if the transfer was aborted or the device left."""
        if self.error is not None:
            raise Stopped()
        if not self.channel.connected:
            self.error = FlashError("The device disconnected during the update.")
            raise Stopped()

    def track(self, d):
        """Follow the session's request Deferred ``d``; its outcome wakes the transfer."""
        tracked = Tracked()

        def done(result):
            tracked.outcome = ("reply", result)
            self.wake()

        def failed(failure):
            tracked.outcome = ("error", failure.value)
            self.wake()

        d.addCallbacks(done, failed)
        return tracked

    async def wait(self, tracked=None, timeout=None):
        """Wait for ``tracked``'s outcome, a notification or ``timeout`` seconds.

        Returns ``("reply", result)`` or ``("error", exception)`` once
        ``tracked`` has an outcome, else ``("notify", None)`` or
        ``("timeout", None)``.
        """
        self.check()
        if tracked is not None and tracked.outcome is not None:
            return tracked.outcome
        wakeup = self._wakeups.get()
        if timeout is None:
            await wakeup  # the common case, once per classic chunk: no race to set up
            index = 0
        else:
            index, _ = await defer.race(
                [wakeup, task.deferLater(self.clock, timeout, lambda: None)]
            )
        self.check()
        if tracked is not None and tracked.outcome is not None:
            return tracked.outcome
        return ("timeout" if index == 1 else "notify"), None

    # -- reporting --------------------------------------------------------------

    def progress(self, done_chunks):
        """Log every ``progress_every`` percent of a transfer of 16 chunks or more."""
        total = len(self.chunks)
        if total < 16:
            return
        percent = done_chunks * 100 // total
        step = self.options.progress_every
        bucket = percent // step * step
        if bucket > self._logged:
            self._logged = bucket
            self.log.info(
                "Flashing {id}: {percent}% ({sent} of {size} bytes)",
                id=self.channel.device_id,
                percent=bucket,
                sent=min(done_chunks * self.chunk_size, len(self.image)),
                size=len(self.image),
            )

    def failure(self, error, what):
        """A :class:`FlashError` for ``error`` raised by a session request."""
        if isinstance(error, DeviceNotConnected):
            return FlashError(f"The device disconnected during the update ({what}).")
        if isinstance(error, (DeviceTimeout, defer.TimeoutError)):
            return FlashError(f"The device did not answer the {what}.", timeout=True)
        return FlashError(f"The {what} failed: {error}")
