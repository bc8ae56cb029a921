"""What the benchmarks print and record about the machine they ran on, and the peak-memory reading they share."""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_device() -> str:
    """'CPU: <model>, <n> logical cores, load <1-minute load average>' (load matters on a shared machine)."""
    return f"CPU: {cpu_name()}, {os.cpu_count()} logical cores, load {os.getloadavg()[0]:.1f}"


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far: VmHWM (reset at exec, so a child started by a big parent
    starts low), else ru_maxrss (kept across fork + exec on Linux; reported in KiB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
