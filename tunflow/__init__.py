"""tunflow: TUN/TAP devices for blocking, asyncio, uvloop and trio code; batched packet pipelines.

The public names are re-exported here; implementation modules are private unless documented.
"""

from __future__ import annotations

from .device import (
    OFFLOAD_ENV as OFFLOAD_ENV,
    AsyncDevice as AsyncDevice,
    DeviceAttribute as DeviceAttribute,
    DeviceBuilder as DeviceBuilder,
    DeviceConfig as DeviceConfig,
    DeviceStatistics as DeviceStatistics,
    InterruptEvent as InterruptEvent,
    Layer as Layer,
    LinkEvent as LinkEvent,
    OffloadInfo as OffloadInfo,
    Route as Route,
    SyncDevice as SyncDevice,
)
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
    InterruptedCallError as InterruptedCallError,
    LinkDownError as LinkDownError,
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
from .offload import (
    VIRTIO_NET_HDR_LEN as VIRTIO_NET_HDR_LEN,
    GROStatistics as GROStatistics,
    GROTable as GROTable,
    VirtioNetHdr as VirtioNetHdr,
    gso_segment_count as gso_segment_count,
    gso_split as gso_split,
    gso_split_into as gso_split_into,
    gso_split_size as gso_split_size,
)
from .packet import (
    HEADROOM as HEADROOM,
    IDEAL_BATCH_SIZE as IDEAL_BATCH_SIZE,
    PACKET_INFORMATION_LENGTH as PACKET_INFORMATION_LENGTH,
    PacketBatch as PacketBatch,
    checksum as checksum,
    checksum_update as checksum_update,
)

__version__ = "0.1.0"

__all__ = [
    # devices
    "DeviceBuilder",
    "SyncDevice",
    "AsyncDevice",
    "DeviceAttribute",
    "DeviceConfig",
    "DeviceStatistics",
    "InterruptEvent",
    "Layer",
    "LinkEvent",
    "OffloadInfo",
    "Route",
    "OFFLOAD_ENV",
    # packets and offload
    "PacketBatch",
    "HEADROOM",
    "IDEAL_BATCH_SIZE",
    "PACKET_INFORMATION_LENGTH",
    "checksum",
    "checksum_update",
    "VIRTIO_NET_HDR_LEN",
    "VirtioNetHdr",
    "GROTable",
    "GROStatistics",
    "gso_split",
    "gso_split_into",
    "gso_split_size",
    "gso_segment_count",
    # errors
    "TunflowError",
    "ConfigError",
    "UnsupportedError",
    "PlatformNotSupportedError",
    "DeviceError",
    "DevicePermissionError",
    "DeviceNotFoundError",
    "DeviceExistsError",
    "DeviceBusyError",
    "ClosedDeviceError",
    "InterruptedCallError",
    "DeviceGoneError",
    "LinkDownError",
    "PacketError",
    "MalformedPacketError",
    "TruncatedPacketError",
    "PacketTooLargeError",
    "OffloadError",
    "PluginError",
    "HandshakeError",
]
