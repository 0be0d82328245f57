"""Model-stage throughput per built-in model vs the bare forward pass, and a cached re-run.

Each model is built with random weights in its official file format (tests/model_fakes.py),
registered through the real checkpoint cache and loaded by the real adapter. Stimuli are JPEG
copies of scikit-image's astronaut (distinct bytes each) whose face detection is already stored,
as after a face-stage run ("cached crops": the MTCNN box and landmarks of MODELS.md).

- bare forward: ``adapter.forward`` on an already prepared batch (the network call with its
  numpy/tensor conversion), repeated to cover the same number of images;
- model stage: ``core.workflows.inference.run_spec`` over the stimuli with the model loaded (image
  decoding, crop and pixel pipeline on the prepare pool, forward, decode, per-batch DB commit).
- preparation only: image decoding + crop + pixel pipeline for the same images, without the
  network, in both modes of core.workflows.preparation (a thread pool; DataLoader worker
  processes, which the model stage uses on an accelerator): the ceiling the model stage cannot
  exceed, so "image preparation is never the bottleneck" reads prep img/s > bare img/s.
Target: model stage >= 0.8 x bare forward at the same batch size and device.
EmotiEffLib models load from the official .pt pickle (torch; fp16 on CUDA) unless
``--emotiefflib-format onnx`` asks for the ONNX export (onnxruntime, fp32 only).

Cached re-run: a study of 1,000 small pre-cropped stimuli is computed once by one model, then
``weights_fingerprint`` + ``run_spec`` is timed again (target < 1 s; nothing is computed).

Run: ``python bench/bench_models.py [--images 64] [--batch-size 32] [--device auto]
[--models ID ...] [--cached 1000]``; on CUDA fp32 and fp16 are both measured. Results also go
to bench/out/models.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.access import Role  # noqa: E402

TARGET_RATIO = 0.8
TARGET_CACHED_SECONDS = 1.0
CACHED_MODEL = "mbf_va_mtl"  # the fastest network: the first (uncached) run stays short
# Identical architecture and pipeline to wtomin_mtl_s0: measuring one student is enough.
SKIP_BY_DEFAULT = ("wtomin_mtl_s1", "wtomin_mtl_s2", "wtomin_mtl_s3", "wtomin_mtl_s4")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64, help="stimuli per model (default 64)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", nargs="*", help="model ids (default: every built-in model)")
    parser.add_argument("--cached", type=int, default=1000, help="stimuli of the cached re-run (0: skip)")
    parser.add_argument("--repeat", type=int, default=5, help="timed repeats; the best is kept")
    parser.add_argument("--emotiefflib-format", choices=("pt", "onnx"), default="pt")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "models.json")
    args = parser.parse_args(argv)
    os.environ["FACEAGREE_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-models-")
    os.environ.pop("FACEAGREE_DB_URL", None)

    import torch

    from core.models import registry
    from core.models.devices import device_label, resolve_device

    device = resolve_device(args.device)
    precisions = (False, True) if device.startswith("cuda") else (False,)
    model_ids = args.models or [m for m in registry.builtin_specs() if m not in SKIP_BY_DEFAULT]
    print(f"device {device_label(device)}, torch threads {torch.get_num_threads()}, "
          f"{args.images} images per model, batch {args.batch_size}")
    factory = _factory()
    study_id = _astronaut_study(factory, args.images)
    results = []
    for model_id in model_ids:
        spec = _surrogate(registry.builtin_specs()[model_id], args.emotiefflib_format)
        for half in precisions:
            row = _bench_model(factory, study_id, spec, device, half, args.batch_size, args.repeat)
            results.append(row)
            print(f"{row['model_id']:18} {row['precision']}  bare {row['bare_ips']:8.1f} img/s  "
                  f"stage {row['stage_ips']:8.1f} img/s  prep {_prep_text(row['prep_ips'])}  ratio {row['ratio']:.2f}  "
                  f"(CPU-time ratio {row['cpu_ratio']:.2f})"
                  f"{'' if row['ratio'] >= TARGET_RATIO else '  BELOW TARGET'}")
    cached = _bench_cached(factory, device, args.cached) if args.cached else None
    if cached:
        print(f"cached re-run over {cached['stimuli']} stimuli ({CACHED_MODEL}): "
              f"{cached['seconds']:.3f} s (first run {cached['first_run_seconds']:.1f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": device_label(device), "batch_size": args.batch_size,
                                    "images": args.images, "models": results, "cached": cached}, indent=2))
    below = [r for r in results if r["ratio"] < TARGET_RATIO]
    slow_cache = cached is not None and cached["seconds"] >= TARGET_CACHED_SECONDS
    return 1 if below or slow_cache else 0


def _factory():
    from db.engine import make_engine, make_sessionmaker

    return make_sessionmaker(make_engine())


def _surrogate(spec, emotiefflib_format: str = "pt"):
    """Random weights in the official format, registered and verified by the real cache code."""
    from tests import model_fakes

    folder = Path(tempfile.mkdtemp(prefix=f"fake-{spec.id}-"))
    if spec.adapter == "emotiefflib" and emotiefflib_format == "pt":
        files = [model_fakes.fake_emotiefflib_pickle(spec, folder)]
    else:
        files = model_fakes.make_fake_checkpoint(spec, folder)
    return model_fakes.register_surrogate(spec, files)


def _prep_text(rates: dict[str, float]) -> str:
    return " / ".join(f"{rate:8.1f} ({mode})" for mode, rate in rates.items())


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def _astronaut_study(factory, n: int) -> int:
    """``n`` distinct JPEGs of the astronaut with its MTCNN face stored as a cached detection."""
    from core.io.storage import store_bytes
    from core.workflows.face_stage import detected
    from db.models import Stimulus, Study
    from tests.model_fakes import astronaut

    image, face = astronaut()
    with factory.begin() as session:
        study = Study(name="bench-astronaut")
        session.add(study)
        session.flush()
        for index in range(n):
            pixels = image.copy()
            pixels[:8, :8] = index % 256  # distinct content per stimulus, away from the face
            pixels[:8, 8:16] = index // 256
            sha = store_bytes(_jpeg(pixels))
            session.add(Stimulus(study_id=study.id, path=f"astronaut_{index:04d}.jpg", sha256=sha,
                                 media_type="image/jpeg", width=512, height=512, thumbnail=b""))
            _store_face(session, detected(sha, "mtcnn-v1", [face], "largest", (512, 512)))
        return study.id


def _store_face(session, result) -> None:
    from db.faces import save_detection

    save_detection(
        session, sha256=result.sha256, detector=result.version,
        faces=[{"box": list(f.box), "score": f.score, "landmarks": [list(p) for p in f.landmarks],
                "image_size": list(result.image_size)} for f in result.faces],
        chosen=result.chosen, choice_rule=result.rule, status=result.status,
        actor=Role.OPERATOR,
    )


def _bench_model(factory, study_id: int, spec, device: str, half: bool, batch_size: int, repeat: int) -> dict:
    from core.io.images import load_rgb
    from core.models import checkpoints, registry
    from core.workflows import inference
    from core.workflows.face_stage import ensure_faces
    from db.predictions import study_images

    adapter = registry.load_adapter(spec, device, half)
    try:
        with factory() as session:
            images = study_images(session, study_id)
        face = ensure_faces(factory, [images[0].sha256], actor=Role.OPERATOR)[images[0].sha256].face
        one = adapter.prepare(load_rgb(images[0].sha256), face)
        batch = np.stack([one] * batch_size)
        adapter.decode(adapter.forward(batch))  # warm-up (first-call allocations, kernel choice)
        n = len(images)
        weights = checkpoints.weights_fingerprint(spec)
        bare, stage = [], []
        for _ in range(repeat):  # interleaved, so load from other processes hits both alike
            bare.append(_timed(_bare, adapter, batch, n))
            stage.append(_timed(_stage, factory, study_id, spec, weights, adapter, device, half, batch_size))
        prep = {mode: max(_prep_rate(adapter, images, face, mode, device, batch_size) for _ in range(2))
                for mode in ("threads", "processes")}  # best of two: the first starts the forkserver
    finally:
        inference.release_adapter(adapter)
    (bare_wall, bare_cpu), (stage_wall, stage_cpu) = _best(bare), _best(stage)
    return {
        "model_id": spec.id, "precision": "fp16" if half else "fp32", "images": n,
        "bare_ips": n / bare_wall, "stage_ips": n / stage_wall, "ratio": bare_wall / stage_wall,
        "cpu_ratio": bare_cpu / stage_cpu, "prep_ips": prep,
    }


def _prep_rate(adapter, images, face, mode: str, device: str, batch_size: int) -> float:
    """Images per second of decoding + preparation alone, in the given mode."""
    from core.workflows.preparation import Item, process_batches, thread_batches

    items = [Item(image.sha256, face) for image in images]
    start = time.perf_counter()
    batches = (process_batches(items, batch_size, adapter.spec, device) if mode == "processes"
               else thread_batches(items, batch_size, adapter))
    if sum(len(batch) for batch in batches) != len(items):
        raise RuntimeError("preparation lost images")
    return len(items) / (time.perf_counter() - start)


def _timed(function, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process over all its threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    function(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def _best(timings: list[tuple[float, float]]) -> tuple[float, float]:
    return min(wall for wall, _ in timings), min(cpu for _, cpu in timings)


def _bare(adapter, batch: np.ndarray, n: int) -> None:
    for done in range(0, n, len(batch)):
        adapter.forward(batch[: min(len(batch), n - done)])


def _stage(factory, study_id, spec, weights, adapter, device, half, batch_size) -> None:
    from sqlalchemy import delete

    from core.workflows.inference import run_spec
    from db.models import Prediction

    with factory.begin() as session:
        session.execute(delete(Prediction))
    report = run_spec(factory, study_id, spec, weights, device=device, half=half,
                      batch_size=batch_size, adapter_source=lambda *_: adapter, actor=Role.OPERATOR)
    if report.computed != report.images:
        raise RuntimeError(f"{spec.id}: {report.summary()}")


def _bench_cached(factory, device: str, n: int) -> dict:
    """Compute ``n`` small pre-cropped stimuli once, then time the cached re-run."""
    from core.io.storage import store_bytes
    from core.models import checkpoints, registry
    from core.workflows import inference
    from db.models import Stimulus, Study
    from tests.model_fakes import astronaut

    image, face = astronaut()
    x1, y1, x2, y2 = (int(v) for v in face.box)
    crop = image[y1:y2, x1:x2]
    with factory.begin() as session:
        study = Study(name="bench-cached")
        session.add(study)
        session.flush()
        for index in range(n):
            pixels = crop.copy()
            pixels[:4, :4] = index % 256
            pixels[:4, 4:8] = index // 256
            session.add(Stimulus(study_id=study.id, path=f"crop_{index:04d}.jpg", sha256=store_bytes(_jpeg(pixels)),
                                 media_type="image/jpeg", width=crop.shape[1], height=crop.shape[0],
                                 thumbnail=b"", precropped=True))
        study_id = study.id
    spec = _surrogate(registry.builtin_specs()[CACHED_MODEL])
    start = time.perf_counter()
    first = inference.run_spec(factory, study_id, spec, checkpoints.weights_fingerprint(spec), device=device, actor=Role.OPERATOR)
    first_seconds = time.perf_counter() - start
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        again = inference.run_spec(factory, study_id, spec, checkpoints.weights_fingerprint(spec), device=device, actor=Role.OPERATOR)
        timings.append(time.perf_counter() - start)
        if again.computed or again.cached != n:
            raise RuntimeError(f"cached re-run computed something: {again.summary()}")
    return {"stimuli": n, "model_id": CACHED_MODEL, "first_run_seconds": first_seconds,
            "first_run": first.summary(), "seconds": min(timings)}


if __name__ == "__main__":
    sys.exit(main())
