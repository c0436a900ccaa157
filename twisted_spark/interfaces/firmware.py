# -*- test-case-name: tests.test_interfaces -*-
"""The flashing entry point the API calls (``PUT /v1/devices/:id`` with ``file``)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Interface


class IFirmwareUpdater(Interface):
    """Puts firmware on a device over the air.

    The API calls only this, so in cluster mode an implementation can
    forward the work to the node holding the device.  Errors are domain
    errors (:mod:`twisted_spark.errors`), which the API maps to answers.
    """

    def flash(
        record: Any, image: bytes | None = None, sources: list[tuple[str, bytes]] | None = None
    ) -> Deferred[str]:
        """Flash ``image``, or the firmware compiled from ``sources`` (file name,
        content pairs), onto the device of ``record`` (a
        :class:`~twisted_spark.models.DeviceRecord`).

        Fires with the stored image's id once the device has acknowledged
        the whole image.  Fails with DeviceBusy (a transfer is running) or a
        :class:`~twisted_spark.errors.FirmwareError`: EmptyFirmware,
        NoCompiler, CompileFailed, BadFileName, then (carrying the stored
        ``image_id``) FirmwareDeviceOffline, FirmwareTooLarge or UpdateFailed.
        """
