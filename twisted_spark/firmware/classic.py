# -*- test-case-name: tests.test_firmware_flasher -*-
"""Classic (stop-and-wait) OTA, PROTOCOL.md §11.2: a Core, or a Photon without fast OTA.

One chunk at a time through the channel's ``send_request``, waiting for its
ChunkReceived; a 4.00 answer (CRC mismatch) resends the same chunk, a
ChunkMissed from the device rewinds to the index it names; then UpdateDone
and its 2.04 answer.
"""

from __future__ import annotations

from twisted_spark.coap import to_device
from twisted_spark.errors import DeviceRequestFailed
from twisted_spark.firmware.plan import FlashError


async def send_classic(transfer):
    """Send every chunk of ``transfer`` (a :class:`~twisted_spark.firmware.transfer.Transfer`)."""
    channel = transfer.channel
    opts = transfer.options
    total = len(transfer.chunks)
    k = 0
    bad = 0
    sent = set()
    while True:
        if transfer.missed:
            k = _rewind(transfer, k, total)
            bad = 0
        if k >= total:
            break
        data, crc = transfer.chunks[k], transfer.crcs[k]
        if k in sent:
            transfer.resent += 1
        sent.add(k)
        tracked = transfer.track(
            channel.send_request(
                lambda mid, tok, crc=crc, data=data: to_device.chunk(mid, tok, crc, data),
                timeout=opts.chunk_timeout,
            )
        )
        kind, value = await transfer.wait(tracked)
        while kind == "notify" and not transfer.missed:
            kind, value = await transfer.wait(tracked)
        if kind == "notify":
            continue  # a ChunkMissed: rewind at the top; that chunk's request is dropped
        if kind == "reply":
            k += 1
            bad = 0
            transfer.progress(k)
            continue
        if isinstance(value, DeviceRequestFailed) and getattr(value, "code", None) == 0x80:
            bad += 1
            transfer.bad_crc += 1
            transfer.log.info(
                "Device {id} reports a CRC mismatch on chunk {k}; resending",
                id=channel.device_id,
                k=k,
            )
            if bad > opts.max_bad_crc:
                raise FlashError(f"Chunk {k} failed its CRC check {bad} times.")
            continue
        raise transfer.failure(value, f"chunk {k}")
    await _done(transfer)


def _rewind(transfer, k, total):
    """Serve queued ChunkMissed messages: the new position."""
    lists, transfer.missed = transfer.missed, []
    for indexes in lists:
        transfer.chunk_missed += 1
        if transfer.chunk_missed > transfer.options.max_chunk_missed:
            raise FlashError(
                f"The device reported missed chunks {transfer.chunk_missed} times; giving up."
            )
        target = indexes[0]
        if target > total:
            raise FlashError(f"The device asked for chunk {target} of {total}.")
        transfer.log.info(
            "Device {id} asks to continue from chunk {target} (was at {k})",
            id=transfer.channel.device_id,
            target=target,
            k=k,
        )
        k = target
    return k


async def _done(transfer):
    tracked = transfer.track(
        transfer.channel.send_request(to_device.update_done, timeout=transfer.options.done_timeout)
    )
    while True:
        kind, value = await transfer.wait(tracked)
        if kind == "reply":
            return
        if kind == "notify":
            if transfer.device_done:
                return
            if transfer.missed:
                # A ChunkMissed after the last chunk: the flash write failed.
                raise FlashError("The device lost chunks after the last one was sent.")
            continue
        if isinstance(value, DeviceRequestFailed):
            raise FlashError(f"The device rejected the finished image ({value}).")
        raise transfer.failure(value, "update-done request")
