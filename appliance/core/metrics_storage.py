"""The files behind the metrics (prometheus_client's multiprocess mode), safe on a full disk.

prometheus_client memory-maps one file per process and kind, created and grown with
truncate(), which leaves them sparse: on a full filesystem the first write into a new page is a
SIGBUS, which no process survives (seen: the API died seven times in 70 s with DATA_DIR on a
full filesystem, then supervisord gave up on it). Here the blocks are allocated when a file is
created or grown, so a full disk is an OSError at that moment instead of a signal later; and a
value whose file cannot be made lives in memory only: that figure is missing from /metrics, the
process goes on.

The adapter for prometheus_client: the one module that touches its private parts (MmapedDict's
_used, _capacity, _f, _init_value and _INITIAL_MMAP_SIZE); tests/test_metrics_storage.py fails
loudly when a release changes them.
"""

from __future__ import annotations

import errno
import logging
import os

from appliance.core.logs import RateLimitFilter

log = logging.getLogger("appliance.metrics.storage")
log.addFilter(RateLimitFilter(60.0))


def allocate(fd: int, size: int) -> None:
    """Make sure ``size`` bytes of the file have blocks (OSError when the disk cannot)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        current = os.fstat(fd).st_size  # a filesystem without fallocate: write the zeros
        if current < size:
            os.pwrite(fd, b"\0" * (size - current), current)


def install() -> None:
    """Replace prometheus_client's value class with the allocating, fail-soft one."""
    from prometheus_client import mmap_dict, values

    class AllocatedMmapedDict(mmap_dict.MmapedDict):
        def __init__(self, filename: str, read_mode: bool = False) -> None:
            if not read_mode:
                with open(filename, "ab") as new:  # before the parent maps and writes it
                    if os.fstat(new.fileno()).st_size == 0:
                        try:
                            allocate(new.fileno(), mmap_dict._INITIAL_MMAP_SIZE)
                        except OSError:
                            os.unlink(filename)  # an empty file would break every scrape
                            raise
            super().__init__(filename, read_mode)

        def _init_value(self, key: str) -> None:
            needed = self._used + len(key.encode()) + 32  # a generous bound on the new entry
            capacity = self._capacity
            while needed > capacity:
                capacity *= 2
            if capacity > self._capacity:
                allocate(self._f.fileno(), capacity)
            super()._init_value(key)

    values.MmapedDict = AllocatedMmapedDict
    file_backed = values.MultiProcessValue()

    def value(*args, **kwargs):
        try:
            return file_backed(*args, **kwargs)
        except OSError as exc:
            log.warning("metrics file not writable: this value is kept in memory only",
                        extra={"error": str(exc), "metric": args[1] if len(args) > 1 else None})
            return values.MutexValue(*args, **kwargs)

    values.ValueClass = value
