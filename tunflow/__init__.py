"""tunflow: TUN/TAP devices for blocking, asyncio, uvloop and trio code; batched packet pipelines."""

from __future__ import annotations

from .errors import (
    ClosedDeviceError as ClosedDeviceError,
    ConfigError as ConfigError,
    DeviceBusyError as DeviceBusyError,
    DeviceError as DeviceError,
    DeviceExistsError as DeviceExistsError,
    DeviceGoneError as DeviceGoneError,
    DeviceNotFoundError as DeviceNotFoundError,
    DevicePermissionError as DevicePermissionError,
    HandshakeError as HandshakeError,
    MalformedPacketError as MalformedPacketError,
    OffloadError as OffloadError,
    PacketError as PacketError,
    PacketTooLargeError as PacketTooLargeError,
    PlatformNotSupportedError as PlatformNotSupportedError,
    PluginError as PluginError,
    TruncatedPacketError as TruncatedPacketError,
    TunflowError as TunflowError,
    UnsupportedError as UnsupportedError,
)
from .packet import (
    HEADROOM as HEADROOM,
    IDEAL_BATCH_SIZE as IDEAL_BATCH_SIZE,
    PacketBatch as PacketBatch,
)

__version__ = "0.1.0"
