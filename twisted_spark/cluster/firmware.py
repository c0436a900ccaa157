# -*- test-case-name: tests.test_cluster_e2e,tests.test_cluster_units -*-
"""Flashing a device another node holds: the image travels by reference.

The node the upload arrives at compiles it (if sources were sent) and
stores it in its image store, then asks the holder to flash the image by
its id; the holder reads it from *its* image store.  Both read the same
files when every node's ``--firmware-dir`` names one shared directory (an
NFS mount, say); otherwise the holder answers that it cannot find the
image, naming the option.  No image ever travels through Redis.
"""

from __future__ import annotations

from twisted.internet import defer
from zope.interface import implementer

from twisted_spark.cluster.calls import RemoteDevice
from twisted_spark.errors import EmptyFirmware, FirmwareError
from twisted_spark.firmware.updater import EMPTY
from twisted_spark.interfaces import IFirmwareUpdater
from twisted_spark.models import DeviceRecord

#: Seconds a cross-node flash may take before the caller gives up (408).
FLASH_TIMEOUT = 900.0

NOT_SHARED = ("Image {image} is not in this node's firmware directory: give every node "
              "the same shared --firmware-dir to flash devices across nodes.")


@implementer(IFirmwareUpdater)
class ClusterFirmware:
    """Flashes here when this node holds the device, else at its holder.

    :param local: this node's :class:`~twisted_spark.firmware.updater.FirmwareUpdater`.
    :param registry: the :class:`~twisted_spark.cluster.registry.ClusterRegistry`.
    :param router: the :class:`~twisted_spark.cluster.calls.CallRouter`; its
        ``flash`` op is served by :meth:`serve_flash`.
    :param store: the device store (the holder's record of the device).
    """

    def __init__(self, local, registry, router, store) -> None:
        self.local = local
        self.registry = registry
        self.store = store
        router.ops["flash"] = self.serve_flash

    def close(self) -> None:
        self.local.close()

    def flash(self, record, image=None, sources=None):
        device = self.registry.get(record.device_id)
        if not isinstance(device, RemoteDevice):
            return self.local.flash(record, image=image, sources=sources)
        return defer.ensureDeferred(self._at_holder(record, device, image, sources))

    async def _at_holder(self, record, device, image, sources):
        if image is None:
            image = await self.local._compile(sources or [], device, record)
        if not image:
            raise EmptyFirmware(EMPTY)
        image_id = await self.local.images.put(image)
        return await device.flash(image_id, FLASH_TIMEOUT)

    def serve_flash(self, session, args):
        """The ``flash`` op, at the holder: image ``args["image"]`` onto ``session``."""
        return defer.ensureDeferred(self._serve(session, args["image"]))

    async def _serve(self, session, image_id):
        image = await self.local.images.get(image_id)
        if image is None:
            raise FirmwareError(NOT_SHARED.format(image=image_id))
        record = await self.store.get_device(session.device_id)
        return await self.local.flash(record or DeviceRecord(session.device_id), image=image)
