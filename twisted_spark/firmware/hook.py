"""The API's flashing hook: ``PUT /v1/devices/:id`` with ``file`` (API.md §4).

:class:`FirmwareHook` is what :class:`~twisted_spark.api.app.SparkAPI` takes as
``firmware=``.  Its :meth:`~FirmwareHook.flash` compiles sources (when the
upload is not a binary), stores the image, checks the device is online and
the image fits, locks the device (``session.busy``: other API calls get 409),
runs a :class:`~twisted_spark.firmware.flasher.Flasher`, publishes
``spark/flash/status`` (started / success / failed) and answers in the shapes
of API.md §4.  The lock and the session's message handler are released on
every path.  The hook listens to ``spark/hardware/max_binary`` and
``spark/hardware/ota_chunk_size`` events to learn each device's limits, and to
the registry to abort a transfer whose device disconnects.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from twisted_spark.api.errors import ApiError
from twisted_spark.errors import DeviceBusy
from twisted_spark.firmware.compiler import CompileError, Compiler, FileNameTooLong
from twisted_spark.firmware.flasher import (
    Flasher,
    FlashError,
    FlashOptions,
    chunk_size_for,
    max_binary_for,
)
from twisted_spark.firmware.images import ImageStore
from twisted_spark.interfaces import IRegistryObserver
from twisted_spark.models import Event

HARDWARE = "spark/hardware/"
NOT_CONNECTED = "Device is not connected."
NO_COMPILER = "Compilation is not configured on this server"


def _number(text):
    try:
        value = int((text or "").strip())
    except ValueError:
        return None
    return value if value > 0 else None


@implementer(IRegistryObserver)
class FirmwareHook:
    """Flash uploaded firmware over the air (see the module docstring).

    :param settings: :class:`~twisted_spark.config.Settings` (``data_dir``,
        ``compile_command``, ``compile_timeout``).
    :param bus: the event bus (``spark/flash/status`` out, hardware events in).
    :param registry: the device registry (sessions; disconnect notices).
    :param clock: ``IReactorTime`` for the transfer's timeouts.
    :param reactor: runs the compile command (defaults to the global reactor).
    :param files: the ``IExecutor`` for the image files (``Executors.files``);
        ``None`` runs file work inline.
    :param options: :class:`~twisted_spark.firmware.flasher.FlashOptions`.
    :param images: an :class:`~twisted_spark.firmware.images.ImageStore`
        (default: ``<data_dir>/firmware``).
    """

    log = Logger()

    def __init__(
        self, settings, bus, registry, clock=None, reactor=None, *, options=None, images=None,
        files=None,
    ):
        if reactor is None:
            from twisted.internet import reactor
        self.settings = settings
        self.bus = bus
        self.registry = registry
        self.clock = clock if clock is not None else reactor
        self.reactor = reactor
        self.options = options or FlashOptions()
        data_dir = Path(settings.data_dir)
        self.images = images or ImageStore(data_dir / "firmware", executor=files)
        self.compiler = None
        if settings.compile_command:
            self.compiler = Compiler(
                settings.compile_command,
                settings.compile_timeout,
                reactor,
                temp_root=str(data_dir / "compile"),
            )
        #: device id -> {"max_binary": int, "ota_chunk_size": int}
        self.hardware = {}
        #: device id -> the running Flasher
        self.active = {}
        #: The summary of the last successful transfer (benchmarks, tests).
        self.last_summary = None
        self._subscription = (
            bus.subscribe(HARDWARE, self._hardware_event) if bus is not None else None
        )
        registry.add_observer(self)

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
        if flasher is not None and flasher.session is session:
            flasher.abort(FlashError("The device disconnected during the update."))

    def subscription_added(self, session, entry):
        pass

    # -- the API hook -----------------------------------------------------------------

    def flash(self, call, record, upload, binary):
        """Compile if needed, store, and flash -> Deferred[response dict] or ApiError."""
        return defer.ensureDeferred(self._flash(call, record, upload, binary))

    async def _flash(self, call, record, upload, binary):
        device_id = record.device_id
        session = self.registry.get(device_id)
        if session is not None and session.busy:
            raise DeviceBusy(device_id)
        if binary:
            image = upload.data
        else:
            image = await self._compile(call, session, record)
        if not image:
            raise ApiError(
                400,
                "Empty firmware",
                "The firmware file is empty.",
                errors=["The firmware file is empty."],
            )
        image_id = await self.images.put(image)
        session = self.registry.get(device_id)
        if session is None:
            raise ApiError(
                404,
                "Device is not connected",
                NOT_CONNECTED,
                errors=[NOT_CONNECTED],
                extra={"firmware_binary_id": image_id},
            )
        if session.busy:
            raise DeviceBusy(device_id)
        known = self.hardware.get(device_id, {})
        limit = max_binary_for(session, known.get("max_binary"))
        if len(image) > limit:
            why = f"The firmware is {len(image)} bytes; the device accepts at most {limit}."
            raise ApiError(
                400, "Firmware too large", why, errors=[why], extra={"firmware_binary_id": image_id}
            )
        chunk_size = chunk_size_for(session, known.get("ota_chunk_size"), self.options.chunk_size)
        flasher = Flasher(session, image, self.clock, self.options, chunk_size=chunk_size)
        return await self._transfer(session, record, flasher, image_id)

    async def _compile(self, call, session, record):
        if self.compiler is None:
            raise ApiError(400, "Not Implemented", NO_COMPILER, errors=[NO_COMPILER])
        files = [(u.filename or name, u.data) for name, u in call.body.files.items()]
        platform = getattr(session, "platform_id", None)
        if platform is None:
            platform = record.platform_id
        try:
            return await self.compiler.compile(files, platform if platform is not None else 0)
        except FileNameTooLong as e:
            raise ApiError(400, "invalid_request", str(e), errors=[str(e)]) from None
        except CompileError as e:
            self.log.info("Compiling for {id} failed: {why}", id=record.device_id, why=e)
            raise ApiError(
                400, "Compile error", str(e), errors=["Compile error"], extra={"output": e.output}
            ) from None

    async def _transfer(self, session, record, flasher, image_id):
        device_id = record.device_id
        session.busy = True
        session.set_update_handler(flasher.message_received)
        self.active[device_id] = flasher
        self._status(record, session, "started")
        try:
            summary = await flasher.run()
        except FlashError as e:
            self._status(record, session, "failed")
            self.log.warn("Updating {id} failed: {why}", id=device_id, why=e)
            raise ApiError(
                408 if e.timeout else 500,
                "Update failed",
                str(e),
                errors=[str(e)],
                extra={"firmware_binary_id": image_id},
            ) from None
        except Exception:
            self._status(record, session, "failed")
            raise
        finally:
            session.busy = False
            session.set_update_handler(None)
            if self.active.get(device_id) is flasher:
                del self.active[device_id]
        session.invalidate_describe()
        self._status(record, session, "success")
        self.last_summary = dict(summary, device_id=device_id)
        self.log.info(
            "Updated {id}: {bytes} bytes in {seconds:.2f} s ({mode}, {chunks} chunks of "
            "{chunk_size}, {resent} resent)",
            id=device_id,
            **summary,
        )
        return {
            "ok": True,
            "id": device_id,
            "status": "Update finished",
            "firmware_binary_id": image_id,
        }

    def _status(self, record, session, data):
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
                owner=getattr(session, "owner", None) or record.owner,
            )
        )
