"""Where the CPU time of a timed stretch went: the main thread (which queues the GPU work), the process's other
threads (the DataLoader's pin-memory thread, CUDA's own), and its child processes (the loader workers). A main
thread busy all the time is Python queueing work or CUDA spinning while it waits for the GPU; the compute-only
figure's own line, with no loader, shows which."""

import contextlib
import os
import time
from pathlib import Path


def children_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by the live child processes of this one."""
    me, tick, total = os.getpid(), os.sysconf("SC_CLK_TCK"), 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            # After the command name in parentheses: state, ppid, ..., utime and stime (fields 14 and 15).
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited since listdir
            continue
        if int(fields[1]) == me:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


@contextlib.contextmanager
def cpu_use():
    """Yields a dict that holds, after the block, the cores each part used on average over its wall time:
    main_thread (at most 1), other_threads and workers."""
    use = {}
    wall, main, process, children = time.perf_counter(), time.thread_time(), time.process_time(), children_cpu_seconds()
    yield use
    wall = time.perf_counter() - wall
    main = time.thread_time() - main
    use["main_thread"] = main / wall
    use["other_threads"] = (time.process_time() - process - main) / wall
    use["workers"] = (children_cpu_seconds() - children) / wall


def describe(use: dict) -> str:
    """One line: the cores of each part, and the share of the time spent waiting for data where it was measured."""
    cores = {part: value for part, value in use.items() if part != "waiting_for_data"}
    text = ", ".join(f"{part.replace('_', ' ')} {value:.2f}" for part, value in cores.items()) + " (cores)"
    if "waiting_for_data" in use:
        text += f"; waiting for the next batch {use['waiting_for_data']:.2f} of the time"
    return text
