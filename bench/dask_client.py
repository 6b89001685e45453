"""The seed's cluster figures, for `offload-bench` (`make bench`).

Measures the seed's own Dask cluster (`python cluster.py` in bench/seed/) from an asynchronous
Dask `Client`, as the seed's app.py talks to it, with the seed's `tasks.fibonacci`, and prints
one JSON object: the same figures the benchmark measures on Offload's cluster client.

`pure=False` everywhere: Dask would otherwise answer a repeated submission from its key cache
and measure no work at all.
"""

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "seed"))

from dask.distributed import Client  # noqa: E402
from tasks import fibonacci  # noqa: E402


def percentile(sorted_values, p):
    return sorted_values[round((len(sorted_values) - 1) * p)]


def median(values):
    return percentile(sorted(values), 0.5)


async def measure(args):
    async with Client(args.scheduler, asynchronous=True) as client:
        await client.wait_for_workers(4, timeout=60)
        for _ in range(args.warmup):
            await client.submit(fibonacci, 0, pure=False)

        trips = []
        for _ in range(args.trips):
            start = time.perf_counter()
            await client.submit(fibonacci, 0, pure=False)
            trips.append(time.perf_counter() - start)
        trips.sort()

        rates = []
        for _ in range(args.tiny_runs):
            start = time.perf_counter()
            futures = client.map(fibonacci, [i % 10 for i in range(args.tiny)], pure=False)
            await client.gather(futures)
            rates.append(args.tiny / (time.perf_counter() - start))

        fib32 = []
        for _ in range(args.fib32_runs):
            start = time.perf_counter()
            value = await client.submit(fibonacci, 32, pure=False)
            fib32.append(time.perf_counter() - start)
            assert value == 2_178_309, value

        fib30x8 = []
        for _ in range(args.fib30x8_runs):
            start = time.perf_counter()
            await client.gather([client.submit(fibonacci, 30, pure=False) for _ in range(8)])
            fib30x8.append(time.perf_counter() - start)

    return {
        "roundtrip_p50_ms": percentile(trips, 0.5) * 1e3,
        "roundtrip_p99_ms": percentile(trips, 0.99) * 1e3,
        "tiny_tasks_per_s": median(rates),
        "fib32_ms": median(fib32) * 1e3,
        "fib30x8_ms": median(fib30x8) * 1e3,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scheduler", default="tcp://127.0.0.1:64719")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--trips", type=int, default=300)
    parser.add_argument("--tiny", type=int, default=10_000)
    parser.add_argument("--tiny-runs", type=int, default=1)
    parser.add_argument("--fib32-runs", type=int, default=5)
    parser.add_argument("--fib30x8-runs", type=int, default=3)
    args = parser.parse_args()
    # The seed's fibonacci prints two lines per task; they go to the workers' log, not here.
    print(json.dumps(asyncio.run(measure(args))))


if __name__ == "__main__":
    main()
