"""A third-party tunflow stage, registered exactly as the built-ins are (see pyproject.toml)."""

from __future__ import annotations

from typing import Any

import attrs

from tunflow.packet import PacketBatch, checksum_update
from tunflow.pipeline import StageBase

__all__ = ["HopLimitStage"]


@attrs.frozen
class HopLimitOptions:
    minimum: int = attrs.field(
        default=1, metadata={"help": "drop packets whose TTL/hop limit would fall below this"}
    )


class HopLimitStage(StageBase):
    """Decrement the IPv4 TTL / IPv6 hop limit; drop packets that expire."""

    plugin = "hoplimit"
    summary = "decrement the IPv4 TTL / IPv6 hop limit, drop packets that expire"
    Options = HopLimitOptions

    def process(self, batch: PacketBatch) -> PacketBatch:
        buf, lengths = batch.buffer, batch.lengths
        minimum = self.options.minimum
        keep: list[int] = []
        for i, off in enumerate(batch.offsets):
            n = lengths[i]
            version = buf[off] >> 4 if n else 0
            if version == 4 and n >= 20:
                ttl = buf[off + 8]
                if ttl - 1 < minimum:
                    self.drop("expired")
                    continue
                old = (ttl << 8) | buf[off + 9]
                buf[off + 8] = ttl - 1
                field = (buf[off + 10] << 8) | buf[off + 11]
                new = checksum_update(field, old, old - 0x100)
                buf[off + 10], buf[off + 11] = new >> 8, new & 0xFF
            elif version == 6 and n >= 40:
                if buf[off + 7] - 1 < minimum:
                    self.drop("expired")
                    continue
                buf[off + 7] -= 1
            else:
                self.drop("malformed")
                continue
            keep.append(i)
        if len(keep) != len(lengths):
            batch.keep(keep)
        return batch

    def statistics(self) -> Any:
        return super().statistics()
