"""Image preparation for the network: decode, crop and normalise each stimulus off the main thread.

Two ways, chosen per run by :func:`choose_mode`:

- ``threads``: a thread pool in this process, one batch ahead of the network. Enough when the
  network runs on the CPU, where the network, not preparation, sets the pace.
- ``processes``: a torch DataLoader whose worker processes prepare whole batches and hand them
  over in shared memory (pinned for CUDA). An accelerator runs EmotiEffLib's enet_b0 at ~6,900
  img/s in fp16 while preparation costs ~2.5 ms of CPU per 512-px JPEG; Python threads stall on
  the GIL (bench/bench_models.py on a 16-core H200 host: 8 threads 730 img/s, 16 threads 610),
  processes scale with the cores.

Both give every image exactly the model's own ``prepare`` (the family module's function of the
same name), so the mode never changes a pixel the network sees; a failing image becomes an error
text for that image and never stops the batch.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np

from core.faces.crops import Face
from core.io.images import load_blob_rgb
from core.io.storage import blob_path
from core.models import registry
from core.models.adapters.base import Adapter
from core.models.spec import ModelSpec

Mode = Literal["auto", "threads", "processes"]
THREADS = max(1, min(8, os.cpu_count() or 1))  # beyond ~8 threads the GIL makes it slower
# The main process keeps one core for the network loop, decoding outputs and database commits.
PROCESSES = max(1, min(32, (os.cpu_count() or 2) - 1))
# Shared memory in flight is bounded: at most this many prepared images wait for the network.
MAX_IMAGES_IN_FLIGHT = 4096
CHUNK = 32  # images per worker task


@dataclass(frozen=True)
class Item:
    """One image to prepare: its blob hash and chosen face, or why it has none."""

    sha256: str
    face: Face | None
    error: str | None = None


@dataclass
class PreparedBatch:
    """Prepared arrays of the ready items, in order, and one error text (or None) per item."""

    arrays: np.ndarray | None
    errors: list[str | None]

    def __len__(self) -> int:
        return len(self.errors)


def choose_mode(mode: Mode, device: str) -> Literal["threads", "processes"]:
    """``auto``: processes when an accelerator runs the network and there are cores to spare."""
    if mode != "auto":
        return mode
    return "processes" if not device.startswith("cpu") and (os.cpu_count() or 1) >= 4 else "threads"


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def thread_batches(items: Sequence[Item], batch_size: int, adapter: Adapter) -> Iterator[PreparedBatch]:
    """Batches prepared on a thread pool, the next one while the caller runs the current one."""
    batches = [items[start:start + batch_size] for start in range(0, len(items), batch_size)]
    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="prepare") as pool:
        pending: list[Future] = []
        try:
            for index, batch in enumerate(batches):
                current = pending or [pool.submit(prepare_one, adapter, item) for item in batch]
                following = batches[index + 1] if index + 1 < len(batches) else []
                pending = [pool.submit(prepare_one, adapter, item) for item in following]
                yield _stacked([future.result() for future in current])
        finally:
            for future in pending:
                future.cancel()


def prepare_one(adapter: Adapter, item: Item) -> tuple[np.ndarray | None, str | None]:
    """(array, None) or (None, error text) for one image, in this process."""
    return prepare_file(adapter.prepare, blob_path(item.sha256), item.face, item.error)


def prepare_file(
    prepare: Callable[[np.ndarray, Face], np.ndarray], path: Path, face: Face | None, error: str | None,
) -> tuple[np.ndarray | None, str | None]:
    """(array, None) or (None, error text) for one blob file; the one per-image step of both modes."""
    if face is None:
        return None, error
    try:
        return prepare(load_blob_rgb(path), face), None
    except Exception as failure:  # any per-image failure is recorded, never fatal
        return None, describe(failure)


def _stacked(results: list[tuple[np.ndarray | None, str | None]]) -> PreparedBatch:
    ready = [array for array, _ in results if array is not None]
    return PreparedBatch(np.stack(ready) if ready else None, [error for _, error in results])


def process_batches(
    items: Sequence[Item], batch_size: int, spec: ModelSpec, device: str, workers: int = PROCESSES,
) -> Iterator[PreparedBatch]:
    """Batches prepared by worker processes (a DataLoader over :class:`StimulusCrops`), in order.

    Workers take chunks of at most :data:`CHUNK` images, so that a run of a few large batches
    still keeps every core busy; the chunks of one batch are joined here.
    """
    from torch.utils.data import DataLoader

    if not items:
        return
    plan = batch_chunks(len(items), batch_size, CHUNK)
    chunks = [chunk for batch in plan for chunk in batch]
    workers = max(1, min(workers, len(chunks), MAX_IMAGES_IN_FLIGHT // min(batch_size, CHUNK)))
    loader = DataLoader(
        StimulusCrops(spec, [_located(item) for item in items]), batch_sampler=chunks,
        num_workers=workers, collate_fn=collate, pin_memory=device.startswith("cuda"),
        multiprocessing_context=_context(), prefetch_factor=2,
    )
    with _bare_main():
        prepared = iter(loader)  # starts the workers
    for batch in plan:
        parts = [next(prepared) for _ in batch]
        yield _joined([tensor.numpy() for tensor, _ in parts], [e for _, errors in parts for e in errors])


def batch_chunks(count: int, batch_size: int, chunk: int) -> list[list[list[int]]]:
    """Indices 0..count-1 in network batches of ``batch_size``, each split into equal chunks of
    at most ``chunk`` indices."""
    plan = []
    for start in range(0, count, batch_size):
        stop = min(count, start + batch_size)
        size = -(-(stop - start) // -(-(stop - start) // chunk))
        plan.append([list(range(low, min(stop, low + size))) for low in range(start, stop, size)])
    return plan


def _joined(arrays: list[np.ndarray], errors: list[str | None]) -> PreparedBatch:
    ready = [index for index, error in enumerate(errors) if error is None]
    joined = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    if len(ready) < len(errors):
        joined = joined[ready] if ready else None
    return PreparedBatch(joined, errors)


def _located(item: Item) -> tuple[str, Face | None, str | None]:
    """Workers get the blob's absolute path: they must not depend on the data-folder setting."""
    return str(blob_path(item.sha256)), item.face, item.error


class StimulusCrops:
    """Map-style dataset: index -> (prepared CHW float32 array, error text or None); never raises.

    A failed image yields zeros of the model's input shape so that the batch still stacks; its
    error text marks it, and the caller drops it before the network.
    """

    def __init__(self, spec: ModelSpec, items: list[tuple[str, Face | None, str | None]]) -> None:
        self.spec = spec
        self.items = items
        self.shape = (3, *spec.preprocessing.input_size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[np.ndarray, str | None]:
        path, face, error = self.items[index]
        prepare = partial(registry.loader_module(self.spec).prepare, self.spec)
        array, error = prepare_file(prepare, Path(path), face, error)
        if array is not None and (array.shape != self.shape or array.dtype != np.float32):
            array, error = None, f"prepared {array.dtype} {array.shape}, the network takes float32 {self.shape}"
        return (self._blank() if array is None else array), error

    def _blank(self) -> np.ndarray:
        return np.zeros(self.shape, np.float32)


def collate(samples: list[tuple[np.ndarray, str | None]]) -> tuple[object, list[str | None]]:
    """Stack in the worker, so one shared-memory tensor per batch crosses to the main process."""
    import torch

    return torch.from_numpy(np.stack([array for array, _ in samples])), [error for _, error in samples]


_MAIN_LOCK = threading.Lock()


@contextmanager
def _bare_main() -> Iterator[None]:
    """Start workers with an empty ``__main__``. multiprocessing re-runs the parent's main
    script in every new worker, and in the app that is the page Streamlit ran last (Streamlit
    installs each page script as ``__main__``): workers would render pages. Ours need nothing
    from it: the dataset and collate function live in this module."""
    with _MAIN_LOCK:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


def _context() -> multiprocessing.context.BaseContext:
    """A forkserver (spawn where there is none): never fork the caller, which may hold CUDA state
    and other threads' locks. The server preloads torch and the adapters once per process."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", __name__, *registry.FAMILY_MODULES, registry.CARD_MODULE])
    return context
