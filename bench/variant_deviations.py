"""Measure how far each variant's input/output moves from its base on random weights.

Run: ``python -m bench.variant_deviations`` (CPU, about a minute). Uses scikit-image's astronaut
photo and its face from tests/model_fakes.py; networks have seeded random weights, so output
figures show the size of the effect, not its size on trained weights.
"""

from __future__ import annotations

import numpy as np
import torch

from core.faces.crops import Face, crop_box
from core.models import registry
from core.models.adapters import emonet, esr9, multitask_cnn
from core.models.face_profiles import PROFILES, crop_with_profile
from core.models.nets.emonet import EmoNet
from core.models.nets.esr9 import ESR9
from core.models.preprocess import resize
from core.models.runtime import TorchNet
from core.models.variants import declare_aligned_crops
from tests.model_fakes import astronaut

SPECS = registry.builtin_specs()


def grey_levels(a: np.ndarray, b: np.ndarray) -> str:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return f"mean {diff.mean():.2f}, max {diff.max()} grey levels"


def main() -> None:
    image, face = astronaut()
    crop = crop_with_profile(image, face.box, PROFILES["emotiefflib"])
    print("EmotiEffLib 224 px input, torch engine vs ONNX engine:",
          grey_levels(resize(crop, (224, 224), "pil_bilinear"), resize(crop, (224, 224), "cv2_linear")))
    print("EmotiEffLib 224 px input from the whole 512 px photo (shrinking), torch vs ONNX engine:",
          grey_levels(resize(image, (224, 224), "pil_bilinear"), resize(image, (224, 224), "cv2_linear")))
    print("EmotiEffLib 224 px input, truncated vs floor/ceil crop:",
          grey_levels(resize(crop, (224, 224), "pil_bilinear"), resize(crop_box(image, face.box), (224, 224), "pil_bilinear")))

    torch.manual_seed(0)
    batch = np.stack([esr9.ESR9Adapter(SPECS["esr9"], None).prepare(img, face) for img in (image, image[:, ::-1].copy())])
    running = esr9.ESR9Adapter(SPECS["esr9"], TorchNet(ESR9()))
    torch.manual_seed(0)
    demo = esr9.ESR9Adapter(SPECS["esr9@authors-demo"], TorchNet(esr9.use_per_image_statistics(ESR9())))
    pairs = zip(running.decode(running.forward(batch)), demo.decode(demo.forward(batch)))
    shares = max(max(abs(a.probs[k] - b.probs[k]) for k in a.probs) for a, b in pairs)
    print(f"ESR-9 vote shares, running vs per-image statistics (seeded random weights): max {shares:.3f}")

    torch.manual_seed(0)
    single = emonet.EmoNetAdapter(SPECS["emonet_8"], TorchNet(EmoNet()))
    flip = emonet.EmoNetAdapter(SPECS["emonet_8@eval-flip"], single.net)
    x = single.prepare(image, face)[None]
    a, b = single.decode(single.forward(x))[0], flip.decode(flip.forward(x))[0]
    print(f"EmoNet V/A, single pass vs flip-averaged (random weights): valence {abs(a.valence - b.valence):.2e}, "
          f"arousal {abs(a.arousal - b.arousal):.2e}")

    native = multitask_cnn.MultitaskCNNAdapter(SPECS["wtomin_mtl"], []).prepare(image, face)
    jpeg = multitask_cnn.MultitaskCNNAdapter(SPECS["wtomin_mtl@jpeg100"], []).prepare(image, face)
    diff = np.abs(native - jpeg)
    print(f"Multitask-CNN 112 px input, native warp vs 100-px JPEG: mean {diff.mean():.2f}, max {diff.max():.0f} grey levels")

    stored = multitask_cnn.jpeg_round_trip(multitask_cnn.aligned_face(image, face.landmarks), multitask_cnn.JPEG_SIDE)
    declared = multitask_cnn.MultitaskCNNAdapter(declare_aligned_crops(SPECS["wtomin_mtl"]), [])
    direct = declared.prepare(stored, Face.whole_image(stored))
    print("Multitask-CNN 112 px input, the alignment script's stored 100-px crop declared aligned vs "
          f"wtomin_mtl@jpeg100 on the photo: max {np.abs(direct - jpeg).max():.0f} grey levels; vs wtomin_mtl: "
          f"mean {np.abs(direct - native).mean():.2f}")

    x1, y1, x2, y2 = face.box
    lowered = Face(box=(x1, y1 + 0.1 * (y2 - y1), x2, y2), score=face.score)
    print("EmoNet 256 px input, box top lowered by 10% of its height (MTCNN box vs a tighter landmark "
          f"box; the real FAN box needs face-alignment's weights): "
          f"{grey_levels(emonet.emonet_crop(image, face), emonet.emonet_crop(image, lowered))}")


if __name__ == "__main__":
    main()
