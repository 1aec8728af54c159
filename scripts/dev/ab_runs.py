"""A/B timing for the dev benchmarks: the library's path against a replaced one, in one process, interleaved."""

import time
from contextlib import nullcontext

library_path = nullcontext  # the library as it is: no replacement


def interleaved(paths: dict, runs: int, work) -> "tuple[dict, dict]":
    """`work()` under each path (name -> context manager factory) `runs` times, alternating which path goes first,
    so a drift in the machine's speed hits both alike: the seconds of each run and what each run returned, per path."""
    seconds, results = {name: [] for name in paths}, {name: [] for name in paths}
    for r in range(runs):
        for name in list(paths) if r % 2 == 0 else list(paths)[::-1]:
            with paths[name]():
                start = time.perf_counter()
                results[name].append(work())
                seconds[name].append(round(time.perf_counter() - start, 2))
    return seconds, results
