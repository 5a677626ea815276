"""Devices: ``DeviceBuilder``, the blocking ``SyncDevice`` and the anyio ``AsyncDevice``."""

from ..platform._base import OffloadInfo as OffloadInfo
from ..platform._base import Route as Route
from ._async import AsyncDevice as AsyncDevice
from ._async import DeviceAttribute as DeviceAttribute
from ._config import DeviceConfig as DeviceConfig
from ._config import Layer as Layer
from ._core import DeviceStatistics as DeviceStatistics
from ._sync import SyncDevice as SyncDevice
from .builder import OFFLOAD_ENV as OFFLOAD_ENV
from .builder import DeviceBuilder as DeviceBuilder

__all__ = [
    "AsyncDevice",
    "DeviceAttribute",
    "DeviceBuilder",
    "DeviceConfig",
    "DeviceStatistics",
    "Layer",
    "OFFLOAD_ENV",
    "OffloadInfo",
    "Route",
    "SyncDevice",
]
