"""Multi-queue readers: one thread per queue of a multi-queue TUN, each counting what it reads.

    sudo python examples/multiqueue.py --queues 4 --seconds 10
    # in another shell, many flows towards the device (each flow sticks to one queue):
    for p in $(seq 40000 40031); do echo hi | socat -t0 - UDP:10.83.0.2:9,sourceport=$p; done

The kernel hashes each flow to one queue; with many flows, every queue gets work, so each reader
can be a thread (or a process: see the pipeline's processes mode).
"""

from __future__ import annotations

import argparse
import collections
import threading
import time

from tunflow import ClosedDeviceError, DeviceBuilder, SyncDevice


def reader(
    dev: SyncDevice, queue: int, counts: collections.Counter[int], seen: list[bytes]
) -> None:
    try:
        while True:
            batch = dev.recv_batch()
            counts[queue] += len(batch)
            seen.extend(batch.to_list())
    except ClosedDeviceError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--ipv4", default="10.83.0.1/24")
    args = parser.parse_args()
    address, prefix = args.ipv4.split("/")
    first = DeviceBuilder().ipv4(address, int(prefix)).multi_queue(True).build_sync()
    devices = [first] + [first.try_clone() for _ in range(args.queues - 1)]
    counts: collections.Counter[int] = collections.Counter()
    seen: list[bytes] = []
    threads = [
        threading.Thread(target=reader, args=(dev, i, counts, seen), daemon=True)
        for i, dev in enumerate(devices)
    ]
    for t in threads:
        t.start()
    print("ready", first.name(), flush=True)
    time.sleep(args.seconds)
    for dev in devices:
        dev.shutdown()
    for t in threads:
        t.join()
    for dev in devices:
        dev.close()
    print("per queue:", dict(sorted(counts.items())), "total:", sum(counts.values()), flush=True)


if __name__ == "__main__":
    main()
