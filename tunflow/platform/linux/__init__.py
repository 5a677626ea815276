"""The Linux backend: tun/tap devices, offload, multi-queue, rtnetlink configuration."""

from .tun import adopt_fd as adopt_fd, open_device as open_device

__all__ = ["adopt_fd", "open_device"]
