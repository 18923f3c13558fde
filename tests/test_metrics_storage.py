"""prometheus_client, as core/metrics_storage.py relies on it: these fail loudly, naming what
changed, when a prometheus_client release moves the private parts the adapter subclasses."""

from __future__ import annotations

import inspect
import mmap
import os

from prometheus_client import mmap_dict, values

from appliance.core import metrics_storage


def test_the_mmap_dict_still_has_the_parts_the_adapter_grows_ahead_of_time(tmp_path):
    assert isinstance(mmap_dict._INITIAL_MMAP_SIZE, int), "mmap_dict._INITIAL_MMAP_SIZE is gone"
    assert list(inspect.signature(mmap_dict.MmapedDict.__init__).parameters)[:3] == [
        "self", "filename", "read_mode"], "MmapedDict(filename, read_mode) changed"
    assert callable(getattr(mmap_dict.MmapedDict, "_init_value", None)), "_init_value is gone"
    store = mmap_dict.MmapedDict(str(tmp_path / "counter_1.db"))
    try:
        assert isinstance(store._used, int) and isinstance(store._capacity, int), \
            "MmapedDict no longer keeps _used and _capacity"
        assert hasattr(store._f, "fileno"), "MmapedDict no longer keeps its file as _f"
    finally:
        store.close()


def test_the_value_classes_the_adapter_replaces_are_still_there():
    assert callable(values.MultiProcessValue), "values.MultiProcessValue is gone"
    assert hasattr(values, "ValueClass") and hasattr(values, "MmapedDict"), \
        "values.ValueClass or values.MmapedDict is gone"
    assert callable(values.MutexValue), "values.MutexValue is gone"


def test_a_new_metrics_file_has_all_its_blocks_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(values, "MmapedDict", values.MmapedDict)  # put back after the test
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    metrics_storage.install()
    store = values.MmapedDict(str(tmp_path / "gauge_livesum_1.db"))
    try:
        size = os.fstat(store._f.fileno())
        assert size.st_size >= mmap.PAGESIZE
        assert size.st_blocks * 512 >= size.st_size, "the file is sparse: a full disk is a SIGBUS"
    finally:
        store.close()
