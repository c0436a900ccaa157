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
