# -*- test-case-name: tests.test_firmware_flasher -*-
"""Fast OTA, PROTOCOL.md §11.3: a Photon that accepted bit 0 of UpdateReady.

Every chunk carries its index and the UpdateBegin's token (reserved on the
channel for the whole transfer) and is sent without waiting: a device OS
1.5 Photon answers none of them.  A CoAP ping every ``fast_window`` chunks
is the flow-control barrier (the device answers it after every earlier
message), and one before every UpdateDone guarantees that no late chunk
answer is taken for the UpdateDone's.  A 4.00 answer to UpdateDone and the
ChunkMissed lists that follow are served by resending; the transfer is
complete on the device's own UpdateDone ([DOS 0.4.9]) or a 2.04 answer to
a repeated UpdateDone ([DOS 1.5.2]).
"""

from __future__ import annotations

from twisted_spark.coap import to_device
from twisted_spark.errors import DeviceRequestFailed
from twisted_spark.firmware.plan import FlashError


async def send_fast(transfer):
    """Stream every chunk of ``transfer``, then finish it (see the module docstring)."""
    total = len(transfer.chunks)
    opts = transfer.options
    window = max(1, opts.fast_window)
    for k in range(total):
        transfer.check()
        _send(transfer, k)
        if (k + 1) % window == 0 and k + 1 < total:
            await _barrier(transfer)
            transfer.progress(k + 1)
    transfer.progress(total)
    for _round in range(opts.max_done_rounds):
        if transfer.device_done:
            return
        _serve_missed(transfer)
        await _barrier(transfer)
        if transfer.device_done:
            return
        tracked = transfer.track(
            transfer.channel.send_request(to_device.update_done, timeout=opts.done_timeout)
        )
        kind, value = await transfer.wait(tracked)
        while kind == "notify":
            if transfer.device_done:
                return
            kind, value = await transfer.wait(tracked)
        if kind == "reply":
            return
        if not (isinstance(value, DeviceRequestFailed) and getattr(value, "code", 0) == 0x80):
            raise transfer.failure(value, "update-done request")
        # 4.00: chunks are missing and ChunkMissed lists follow.  Serve them
        # until the device is quiet for fast_quiet seconds, then UpdateDone again.
        while True:
            _serve_missed(transfer)
            kind, _ = await transfer.wait(timeout=opts.fast_quiet)
            if transfer.device_done:
                return
            if kind == "timeout" and not transfer.missed:
                break
    raise FlashError(f"The device still misses chunks after {opts.max_done_rounds} rounds.")


def _send(transfer, index):
    crc, data, token = transfer.crcs[index], transfer.chunks[index], transfer.token
    transfer.channel.send_message(lambda mid: to_device.chunk(mid, token, crc, data, index))


async def _barrier(transfer):
    """A ping the device answers after every earlier message (flow control)."""
    tracked = transfer.track(transfer.channel.ping())
    timer_at = transfer.clock.seconds() + transfer.options.done_timeout
    while True:
        left = timer_at - transfer.clock.seconds()
        kind, value = await transfer.wait(tracked, timeout=max(0.0, left))
        if kind == "notify":
            _serve_missed(transfer)
            continue
        if kind == "reply":
            return
        if kind == "timeout":
            raise FlashError("The device stopped answering during the update.", timeout=True)
        raise transfer.failure(value, "ping")


def _serve_missed(transfer):
    """Resend the chunks listed in queued ChunkMissed messages; True if any."""
    lists, transfer.missed = transfer.missed, []
    total = len(transfer.chunks)
    wanted = []
    for indexes in lists:
        transfer.chunk_missed += 1
        for i in indexes:
            if i < total and i not in wanted:
                wanted.append(i)
    for i in wanted:
        _send(transfer, i)
        transfer.resent += 1
    if wanted:
        transfer.log.info(
            "Device {id} missed {n} chunks; resent", id=transfer.channel.device_id, n=len(wanted)
        )
    return bool(lists)
