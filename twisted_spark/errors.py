# -*- test-case-name: tests.test_api_http,tests.test_firmware_updater -*-
"""Domain errors shared across parts.

The API maps each of these to one status code and JSON body in a single
place; the device side raises them through Deferred errbacks.
"""


class SparkError(Exception):
    """Base class for every error this package raises on purpose."""


class DuplicateUser(SparkError):
    """A user with that name already exists."""


class DeviceNotConnected(SparkError):
    """The device has no live session (or it went away mid-request)."""


class DeviceTimeout(SparkError):
    """The device did not answer within the request timeout."""


class DeviceBusy(SparkError):
    """The device is being flashed; other calls must wait."""


class UnknownFunction(SparkError):
    """The device does not expose that function."""


class UnknownVariable(SparkError):
    """The device does not expose that variable."""


class DeviceRequestFailed(SparkError):
    """The device answered a request with an error code."""


class ArgumentTooLong(SparkError):
    """A function argument is longer than the device accepts."""


class FirmwareError(SparkError):
    """Flashing firmware failed; ``str(error)`` is the sentence for the user.

    :ivar image_id: the id of the stored image, once the upload was stored
        (the API returns it as ``firmware_binary_id``), else ``None``.
    """

    def __init__(self, message: str, image_id: str | None = None) -> None:
        super().__init__(message)
        self.image_id = image_id


class EmptyFirmware(FirmwareError):
    """The uploaded (or compiled) image is empty."""


class NoCompiler(FirmwareError):
    """Sources were uploaded but no ``--compile-command`` is configured."""


class BadFileName(FirmwareError):
    """An uploaded source file's name cannot be stored (too long)."""


class CompileFailed(FirmwareError):
    """The compile command failed; ``output`` is what it printed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class FirmwareDeviceOffline(FirmwareError):
    """The device was not connected when its image was ready."""


class FirmwareTooLarge(FirmwareError):
    """The image is larger than the device takes."""


class UpdateFailed(FirmwareError):
    """The transfer to the device failed; ``timeout`` when the device went silent."""

    def __init__(self, message: str, image_id: str | None = None, timeout: bool = False) -> None:
        super().__init__(message, image_id)
        self.timeout = timeout


class StoreUnavailable(SparkError):
    """The database cannot be reached (down, restarting, or the connection broke).

    The store raises it instead of the driver's error, so the API answers
    503 and the caller can try again; the store reconnects by itself.
    """
