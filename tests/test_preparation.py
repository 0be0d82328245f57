"""Image preparation in worker processes hands the network exactly what the model's own
``prepare`` makes in this process, with each failing image's reason in its place."""

from __future__ import annotations

import io
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from core.io.storage import store_bytes
from core.models import registry
from core.workflows import preparation
from core.workflows.preparation import Item, batch_chunks, choose_mode, process_batches, thread_batches
from tests import model_fakes


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def astronaut_items(count: int) -> list[Item]:
    """``count`` distinct astronaut JPEGs with their face, then a corrupt file, a blob that is
    not stored and an image without a face, between the good ones."""
    image, face = model_fakes.astronaut()
    items = []
    for index in range(count):
        pixels = image.copy()
        pixels[:4, :4] = index
        items.append(Item(store_bytes(jpeg(pixels)), face))
    items.insert(1, Item(store_bytes(b"this is not an image"), face))
    items.insert(3, Item("0" * 64, face))
    items.insert(4, Item(items[0].sha256, None, "no face found by mtcnn-v1"))
    return items


def model_prepare(spec):
    return SimpleNamespace(spec=spec, prepare=partial(registry.loader_module(spec).prepare, spec))


@pytest.mark.parametrize("model_id", ["enet_b0_8_va_mtl", "mbf_va_mtl", "emonet_8", "wtomin_mtl_s0", "esr9"])
def test_worker_processes_prepare_the_same_arrays_and_errors_as_threads(data_dir, model_id):
    spec = registry.builtin_specs()[model_id]
    items = astronaut_items(5)
    in_threads = list(thread_batches(items, 3, model_prepare(spec)))
    in_processes = list(process_batches(items, 3, spec, "cpu", workers=2))
    assert [b.errors for b in in_processes] == [b.errors for b in in_threads]
    errors = [error for batch in in_processes for error in batch.errors]
    assert errors[4] == "no face found by mtcnn-v1"
    assert errors[1].startswith("ImageError: this is not an image")
    assert errors[3].startswith("ImageError: stimulus blob 000000000000… is missing")
    assert sum(error is None for error in errors) == 5
    for threaded, processed in zip(in_threads, in_processes):
        assert (threaded.arrays is None) == (processed.arrays is None)
        if threaded.arrays is not None:
            assert processed.arrays.dtype == np.float32
            np.testing.assert_array_equal(processed.arrays, threaded.arrays)


@pytest.mark.parametrize("model_id", sorted(registry.builtin_specs()))
def test_every_model_prepares_float32_in_its_declared_input_size(model_id):
    """Worker processes stack into buffers of (3, *input_size): every model must fit them."""
    spec = registry.builtin_specs()[model_id]
    image, face = model_fakes.astronaut()
    array = registry.loader_module(spec).prepare(spec, image, face)
    assert array.dtype == np.float32
    assert array.shape == (3, *spec.preprocessing.input_size)


def test_processes_are_chosen_for_an_accelerator_with_cores_to_spare(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert choose_mode("auto", "cuda:0") == "processes"
    assert choose_mode("auto", "cpu") == "threads"
    assert choose_mode("threads", "cuda:0") == "threads"
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert choose_mode("auto", "cuda:0") == "threads"


@given(count=st.integers(0, 300), batch_size=st.integers(1, 300), chunk=st.integers(1, 64))
def test_batch_chunks_split_each_batch_into_equal_chunks_in_order(count, batch_size, chunk):
    plan = batch_chunks(count, batch_size, chunk)
    assert [i for batch in plan for part in batch for i in part] == list(range(count))
    assert all(sum(map(len, batch)) == batch_size for batch in plan[:-1])
    for batch in plan:
        sizes = [len(part) for part in batch]
        assert max(sizes) <= chunk and max(sizes) - min(sizes) <= max(sizes) - 1
        assert all(size == sizes[0] for size in sizes[:-1])


def test_chunks_of_one_batch_are_joined_in_order(data_dir, monkeypatch):
    """Batches of 5 prepared by workers in chunks of 2: the same arrays as in one piece."""
    monkeypatch.setattr(preparation, "CHUNK", 2)
    spec = registry.builtin_specs()["mbf_va_mtl"]
    items = astronaut_items(5)
    in_threads = list(thread_batches(items, 5, model_prepare(spec)))
    in_chunks = list(preparation.process_batches(items, 5, spec, "cpu", workers=2))
    assert [len(b) for b in in_chunks] == [5, 3]
    assert [b.errors for b in in_chunks] == [b.errors for b in in_threads]
    for threaded, chunked in zip(in_threads, in_chunks):
        np.testing.assert_array_equal(chunked.arrays, threaded.arrays)


def test_a_cancelled_run_stops_its_worker_processes(data_dir):
    import multiprocessing
    import time

    spec = registry.builtin_specs()["mbf_va_mtl"]
    batches = process_batches(astronaut_items(12), 2, spec, "cpu", workers=2)
    assert len(next(batches)) == 2
    assert len(multiprocessing.active_children()) == 2
    batches.close()
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert multiprocessing.active_children() == []


def test_workers_do_not_rerun_the_main_script(data_dir, tmp_path, monkeypatch):
    """Streamlit installs the page it runs as ``__main__``; a worker that re-ran it would render
    the page (here: raise) instead of preparing images."""
    import sys
    import types

    page = tmp_path / "page.py"
    page.write_text("raise SystemExit('a worker re-ran the page script')\n")
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(page)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    spec = registry.builtin_specs()["mbf_va_mtl"]
    batches = list(process_batches(astronaut_items(2), 5, spec, "cpu", workers=2))
    assert sum(error is None for batch in batches for error in batch.errors) == 2
    assert sys.modules["__main__"] is fake_main
