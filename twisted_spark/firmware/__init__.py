# -*- test-case-name: tests.test_firmware_updater -*-
"""Over-the-air firmware updates: image store, compiler, OTA flasher, the updater."""

from twisted_spark.firmware.flasher import Flasher, FlashError, FlashOptions
from twisted_spark.firmware.updater import FirmwareUpdater

__all__ = ["FirmwareUpdater", "FlashError", "FlashOptions", "Flasher"]
