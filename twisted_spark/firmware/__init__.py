"""Over-the-air firmware updates: image store, compiler, OTA flasher, API hook."""

from twisted_spark.firmware.flasher import Flasher, FlashError, FlashOptions
from twisted_spark.firmware.hook import FirmwareHook

__all__ = ["FirmwareHook", "FlashError", "FlashOptions", "Flasher"]
