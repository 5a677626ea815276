"""Devices: ``DeviceBuilder``, the blocking ``SyncDevice`` and the anyio ``AsyncDevice``."""

from ..netconfig.device import DeviceConfig as DeviceConfig, Layer as Layer
from ..platform._base import OffloadInfo as OffloadInfo, Route as Route
from ._async import AsyncDevice as AsyncDevice, DeviceAttribute as DeviceAttribute
from ._core import DeviceStatistics as DeviceStatistics
from ._interrupt import InterruptEvent as InterruptEvent
from ._links import (
    AsyncLinkEvents as AsyncLinkEvents,
    LinkEvent as LinkEvent,
    LinkEvents as LinkEvents,
)
from ._sync import SyncDevice as SyncDevice
from .builder import OFFLOAD_ENV as OFFLOAD_ENV, DeviceBuilder as DeviceBuilder

__all__ = [
    "AsyncDevice",
    "DeviceAttribute",
    "DeviceBuilder",
    "DeviceConfig",
    "DeviceStatistics",
    "InterruptEvent",
    "Layer",
    "LinkEvent",
    "LinkEvents",
    "AsyncLinkEvents",
    "OFFLOAD_ENV",
    "OffloadInfo",
    "Route",
    "SyncDevice",
]
