"""This process's resident memory, for the benchmarks' peak-memory columns (Linux /proc).

>>> status_bytes("VmRSS") > 0
True
"""
from __future__ import annotations


def status_bytes(field: str) -> int:
    """A ``/proc/self/status`` field (``VmRSS``, ``VmHWM``) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) << 10
    raise LookupError(f"/proc/self/status has no {field}")


def reset_peak() -> bool:
    """Reset VmHWM (the peak) to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
