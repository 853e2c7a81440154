"""One shopper's uncached query through the text tower, on an idle and on a busy machine, with
torch's default thread count (one per core) and with the web server's (SEARCH_SERVE_TORCH_THREADS).

Busy = one process per core spinning in Python, as when the machine also indexes or serves
other requests. torch's intra-op threads wait for each other at every operation, so when one
of them is descheduled a query waits for a whole time slice, many times over. Floor: the same
query at one thread on the idle machine.

    .venv/bin/python benchmarks/query_encoding.py [--preset vit-b-32|tiny] [--model DIR] [--queries 30]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

from common import setup_instance, table


def spin(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model")
    parser.add_argument("--preset", choices=["tiny", "vit-b-32"], default="vit-b-32")
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    setup_instance(model=args.model, preset=args.preset)
    import torch

    from search.retrieval.providers import get_encoder

    encoder = get_encoder()
    default_threads = torch.get_num_threads()
    counter = iter(range(10**9))

    def timed(threads: int) -> list[float]:
        torch.set_num_threads(threads)
        encoder.encode_texts(["warm up"])
        out = []
        for _ in range(args.queries):
            text = f"red striped mug {next(counter)}"  # never cached
            start = time.perf_counter()
            encoder.encode_texts([text])
            out.append((time.perf_counter() - start) * 1000)
        return out

    rows = []
    for busy in (False, True):
        stop = multiprocessing.Event()
        spinners = (
            [multiprocessing.Process(target=spin, args=(stop,)) for _ in range(os.cpu_count() or 1)] if busy else []
        )
        for process in spinners:
            process.start()
        try:
            for threads in sorted({1, default_threads}):
                rows.append((f"{'busy' if busy else 'idle'} machine, {threads} torch thread(s)", timed(threads)))
        finally:
            stop.set()
            for process in spinners:
                process.join()
    floor = statistics.median(rows[0][1])
    print(
        f"\nmodel {encoder.model_id}; {os.cpu_count()} cores; torch default {default_threads} threads; "
        f"{args.queries} uncached queries per row; busy = {os.cpu_count()} spinning processes\n"
    )
    print(
        table(
            ["path", "p50 ms", "p95 ms", "x floor p50"],
            [
                [
                    label,
                    f"{statistics.median(t):.1f}",
                    f"{sorted(t)[int(len(t) * 0.95) - 1]:.1f}",
                    f"{statistics.median(t) / floor:.1f}",
                ]
                for label, t in rows
            ],
        )
    )


if __name__ == "__main__":
    main()
