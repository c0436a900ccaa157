# -*- test-case-name: tests.test_firmware_updater,tests.test_firmware_e2e -*-
"""Flashing a device on this node: the :class:`~twisted_spark.interfaces.IFirmwareUpdater`.

:class:`FirmwareUpdater` is what :class:`~twisted_spark.api.app.SparkAPI`
takes as ``firmware=``.  Its :meth:`~FirmwareUpdater.flash` compiles sources
(when no binary was uploaded), stores the image, checks the device is online
and the image fits, locks the device (``busy``: its other calls fail with
DeviceBusy), runs a :class:`~twisted_spark.firmware.flasher.Flasher` (a
:class:`~twisted_spark.firmware.v3.FlasherV3` for a Gen3 device taking OTA v3) on the
device's :class:`~twisted_spark.interfaces.IDeviceChannel`, publishes
``spark/flash/status`` (started / success / failed) and fires with the
image's id.  Failures are domain errors (:class:`~twisted_spark.errors.FirmwareError`
and DeviceBusy); the API maps them to answers.  The lock and the channel's
update handler are released on every path.  The updater listens to
``spark/hardware/max_binary`` and ``spark/hardware/ota_chunk_size`` events to
learn each device's limits, and to the registry to abort a transfer whose
device disconnects.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from twisted_spark.errors import (
    BadFileName,
    CompileFailed,
    DeviceBusy,
    EmptyFirmware,
    FirmwareDeviceOffline,
    FirmwareTooLarge,
    NoCompiler,
    UpdateFailed,
)
from twisted_spark.firmware.compiler import CompileError, Compiler, FileNameTooLong
from twisted_spark.firmware.flasher import (
    Flasher,
    FlashError,
    FlashOptions,
    chunk_size_for,
    max_binary_for,
)
from twisted_spark.firmware.images import ImageStore
from twisted_spark.firmware.v3 import FlasherV3
from twisted_spark.interfaces import IDeviceChannel, IFirmwareUpdater, IRegistryObserver
from twisted_spark.models import DeviceRecord, Event

HARDWARE = "spark/hardware/"
NOT_CONNECTED = "Device is not connected."
NO_COMPILER = "Compilation is not configured on this server"
EMPTY = "The firmware file is empty."


def _number(text):
    try:
        value = int((text or "").strip())
    except ValueError:
        return None
    return value if value > 0 else None


@implementer(IFirmwareUpdater, IRegistryObserver)
class FirmwareUpdater:
    """Flash uploaded firmware over the air (see the module docstring).

    :param settings: :class:`~twisted_spark.config.Settings` (``data_dir``,
        ``compile_command``, ``compile_timeout``).
    :param bus: the event bus (``spark/flash/status`` out, hardware events in).
    :param registry: the :class:`~twisted_spark.interfaces.IDeviceRegistry`
        (local sessions; disconnect notices).
    :param clock: ``IReactorTime`` for the transfer's timeouts.
    :param reactor: runs the compile command (``IReactorProcess``).
    :param options: :class:`~twisted_spark.firmware.plan.FlashOptions`.
    :param images: an :class:`~twisted_spark.firmware.images.ImageStore`
        (default: ``<data_dir>/firmware``, its file work in ``files``).
    :param files: the ``IExecutor`` for the image files (``Executors.files``);
        ``None`` runs file work inline.
    :param metrics: the server's :class:`~twisted_spark.metrics.Metrics`:
        transfers by outcome, their duration, and those running now.
    """

    log = Logger()

    def __init__(self, settings, bus, registry, *, clock, reactor, options=None, images=None,
                 files=None, metrics=None):
        self.settings = settings
        self.bus = bus
        self.registry = registry
        self.clock = clock
        self.reactor = reactor
        self.options = options or FlashOptions()
        data_dir = Path(settings.data_dir)
        image_dir = getattr(settings, "firmware_dir", None) or data_dir / "firmware"
        self.images = images or ImageStore(image_dir, executor=files)
        self.compiler = None
        if settings.compile_command:
            self.compiler = Compiler(
                settings.compile_command,
                settings.compile_timeout,
                reactor,
                temp_root=str(data_dir / "compile"),
            )
        #: device id -> {"max_binary": int, "ota_chunk_size": int}
        self.hardware: dict[str, dict[str, int]] = {}
        #: device id -> the running Flasher
        self.active: dict[str, Flasher | FlasherV3] = {}
        #: The summary of the last successful transfer (benchmarks, tests).
        self.last_summary = None
        self._subscription = (
            bus.subscribe(HARDWARE, self._hardware_event) if bus is not None else None
        )
        registry.add_observer(self)
        self.metrics = metrics
        if metrics is not None:
            metrics.gauge("spark_ota_in_progress", "Firmware transfers running now",
                          lambda: len(self.active))

    def close(self):
        """Stop listening (server shutdown)."""
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None
        self.registry.remove_observer(self)

    # -- inputs ---------------------------------------------------------------------

    def _hardware_event(self, event):
        key = event.name[len(HARDWARE) :]
        if key in ("max_binary", "ota_chunk_size"):
            value = _number(event.data)
            if value is not None:
                self.hardware.setdefault(event.coreid, {})[key] = value

    def device_online(self, session):
        pass

    def device_offline(self, session):
        flasher = self.active.get(session.device_id)
        if flasher is not None and flasher.channel is session:
            flasher.abort(FlashError("The device disconnected during the update."))

    def subscription_added(self, session, entry):
        pass

    # -- IFirmwareUpdater -------------------------------------------------------------

    def flash(
        self,
        record: DeviceRecord,
        image: bytes | None = None,
        sources: list[tuple[str, bytes]] | None = None,
    ) -> defer.Deferred[str]:
        """Compile if needed, store, and flash -> Deferred[image id] (see the interface)."""
        return defer.ensureDeferred(self._flash(record, image, sources))

    async def _flash(self, record, image, sources):
        device_id = record.device_id
        device = self.registry.get(device_id)
        if device is not None and device.busy:
            raise DeviceBusy(device_id)
        if image is None:
            image = await self._compile(sources or [], device, record)
        if not image:
            raise EmptyFirmware(EMPTY)
        image_id = await self.images.put(image)
        session = self.registry.local(device_id)
        if session is None:
            raise FirmwareDeviceOffline(NOT_CONNECTED, image_id)
        channel = IDeviceChannel(session)
        if channel.busy:
            raise DeviceBusy(device_id)
        known = self.hardware.get(device_id, {})
        limit = max_binary_for(channel, known.get("max_binary") or channel.max_binary_size)
        if len(image) > limit:
            why = f"The firmware is {len(image)} bytes; the device accepts at most {limit}."
            raise FirmwareTooLarge(why, image_id)
        flasher: Flasher | FlasherV3
        if channel.ota_v3:  # a Gen3 device: its Hello announced OTA v3 and its chunk size
            flasher = FlasherV3(channel, image, self.clock, self.options,
                                chunk_size=self.options.chunk_size)
        else:
            chunk_size = chunk_size_for(channel, known.get("ota_chunk_size"),
                                        self.options.chunk_size)
            flasher = Flasher(channel, image, self.clock, self.options, chunk_size=chunk_size)
        await self._transfer(channel, record, flasher, image_id)
        return image_id

    async def _compile(self, sources, device, record):
        if self.compiler is None:
            raise NoCompiler(NO_COMPILER)
        platform = getattr(device, "platform_id", None)
        if platform is None:
            platform = record.platform_id
        try:
            return await self.compiler.compile(sources, platform if platform is not None else 0)
        except FileNameTooLong as e:
            raise BadFileName(str(e)) from None
        except CompileError as e:
            self.log.info("Compiling for {id} failed: {why}", id=record.device_id, why=e)
            raise CompileFailed(str(e), e.output) from None

    async def _transfer(self, channel, record, flasher, image_id):
        device_id = record.device_id
        channel.busy = True
        channel.set_update_handler(flasher.message_received)
        self.active[device_id] = flasher
        self._status(record, channel, "started")
        started, outcome = self.clock.seconds(), "error"
        try:
            summary = await flasher.run()
            outcome = "success"
        except FlashError as e:
            outcome = "failed"
            self._status(record, channel, "failed")
            self.log.warn("Updating {id} failed: {why}", id=device_id, why=e)
            raise UpdateFailed(str(e), image_id, timeout=e.timeout) from None
        except Exception:
            self._status(record, channel, "failed")
            raise
        finally:
            if self.metrics is not None:
                self.metrics.ota.labels(outcome).observe(self.clock.seconds() - started)
            channel.busy = False
            channel.set_update_handler(None)
            if self.active.get(device_id) is flasher:
                del self.active[device_id]
        channel.invalidate_describe()
        self._status(record, channel, "success")
        self.last_summary = dict(summary, device_id=device_id)
        self.log.info(
            "Updated {id}: {bytes} bytes in {seconds:.2f} s ({mode}, {chunks} chunks of "
            "{chunk_size}, {resent} resent)",
            id=device_id,
            **summary,
        )

    def _status(self, record, channel, data):
        if self.bus is None:
            return
        self.bus.publish(
            Event(
                name="spark/flash/status",
                data=data,
                ttl=60,
                published_at=self.clock.seconds(),
                coreid=record.device_id,
                public=False,
                owner=channel.owner or record.owner,
            )
        )
