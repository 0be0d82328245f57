"""ESR-9 adapter (pipeline E): nine branches vote on the emotion and average valence/arousal.

Official behaviour reproduced (controller/cvision.py of the authors' repository):
- input: the face box without margin, **BGR** (OpenCV order, never converted), ``cv2.resize`` to
  96x96 (bilinear), ToTensor to [0, 1], no mean/std;
- emotion: plurality vote of the branches' argmaxes, ties to the lowest label index (argmax over
  the vote counts);
- valence/arousal: mean over branches of ``fc_dimensional(ReLU(logits))``, index 0 valence,
  index 1 arousal.

Two official behaviours, two specs:
- ``esr9`` (default): BatchNorm with the stored running statistics and raw V/A means. The
  published numbers come from the training script's validation (main_affectnet_discrete.py:288
  and :358), whose branches are also a plain list: it normalised with the statistics of batches
  of 32 faces, which the running statistics approximate and a single face's statistics do not.
- ``esr9@authors-demo``: what ``controller/cvision.py`` ``_predict`` returns and its CLI writes.
  ``ESR`` keeps its branches in a plain Python list (model/ml/esr_9.py:207), so ``self.eval()``
  (esr_9.py:218) never reaches them: every call normalises each branch with the single image's own
  statistics. Arousal is mapped per branch to ``clip((a + 1) / 2, 0, 1)`` (cvision.py:239) before
  the mean (cvision.py:242), and that mean is the value written to the CSV (model/utils/ufile.py:64),
  so this variant stores arousal in [0, 1] (raw branch mean kept in ``extras``).

``probs`` holds the vote shares (votes / 9): they are what the ensemble's decision is made of, so
the label is always their argmax, and they read like a human rater vote distribution. The mean
branch softmax is kept in ``extras["mean_softmax"]``, per-branch labels and V/A too.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.faces.crops import Face
from core.models.adapters.base import ModelOutput
from core.models.preprocess import prepare_face
from core.models.runtime import TorchNet, to_numpy
from core.models.spec import CheckpointFile, ModelSpec, Preprocessing
from core.models.variants import make_variant

if TYPE_CHECKING:
    import torch

    from core.models.nets.esr9 import ESR9

REPO = "https://github.com/siqueira-hc/Efficient-Facial-Feature-Learning-with-Wide-Ensemble-based-Convolutional-Neural-Networks"
COMMIT = "5980cbf51bd2c4c64b6288d6c708e910479df025"
WEIGHTS_URL = f"{REPO}/raw/{COMMIT}/model/ml/trained_models/esr_9/"
BASE_FILE = "Net-Base-Shared_Representations.pt"
# Git blob ids from the official repository tree at COMMIT (`git ls-tree`). The base file's sha256
# was computed from that blob's bytes (1,506,551 bytes).
BASE_SHA256 = "563215f7ae9487277f2da2f1b48d6d1e3b3de5daa1cf377429dd5368379acb97"
BASE_GIT_BLOB = "b24ff4f0c09969e497f5817b8214561822767be9"
BRANCH_GIT_BLOBS = (
    "e5d8b005b556e00db68b0b5d0bcee7102ccd9a3f", "c4af83fd0c42e714c67b2ae937506d153f9bbe26",
    "a79d5f10035c2ba76ec8b3bd8bb26b74057e27b7", "c1296a8f4eed09b4409ea74a7733fdd4f098e886",
    "5e9060dd4920f25c8222b7758d0774b62d922ffa", "e21160368163d0c199ef16efa3a28b452c73d63b",
    "618bd03d599da78cdd75ed58f3eeef0b0a650c48", "db56e4b1aa42048f34cf4086593e37a5aabb5fce",
    "280edf9afa2d24b4c81e817c24846c805166faf4",
)
NATIVE_LABELS = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")


def _checkpoints() -> tuple[CheckpointFile, ...]:
    base = CheckpointFile(
        name=BASE_FILE, url=WEIGHTS_URL + BASE_FILE, fmt="legacy_state_dict",
        sha256=BASE_SHA256, git_blob=BASE_GIT_BLOB, size=1_506_551,
    )
    branches = tuple(
        CheckpointFile(name=f"Net-Branch_{i}.pt", url=WEIGHTS_URL + f"Net-Branch_{i}.pt", fmt="legacy_state_dict", git_blob=blob)
        for i, blob in enumerate(BRANCH_GIT_BLOBS, start=1)
    )
    return (base, *branches)


ESR9_BASE = ModelSpec(
        id="esr9",
        name="ESR-9",
        pipeline="E ESR-9",
        adapter="esr9",
        paper="Siqueira, Magg & Wermter (2020). Efficient Facial Feature Learning with Wide Ensemble-based Convolutional Neural Networks. AAAI-20.",
        license="Code MIT; trained model for non-commercial use only (authors' README)",
        architecture="ESR: shared conv base + 9 conv branches",
        pretraining="none (trained from scratch)",
        training_data="AffectNet (8 categories; valence/arousal)",
        strategy="Ensemble with shared representations; plurality vote, mean V/A",
        params=20_349_546,
        checkpoints=_checkpoints(),
        preprocessing=Preprocessing(
            version="esr9-v2", input_size=(96, 96), colour="BGR", crop="tight_box",
            resize="cv2_linear", scale=1.0 / 255.0, face_profile="esr9",
        ),
        native_labels=NATIVE_LABELS,
        outputs=frozenset({"probs", "va"}),
        va_decode="raw",
        homepage=REPO,
        notes=(
            "probs = branch vote shares (the official decision); mean branch softmax in extras. "
            "V/A raw, unbounded, mean of the 9 branches. State dicts in torch's legacy format, "
            "loaded with weights_only=True. Crop: integer (truncated) box, no margin."
        ),
        variant_note=(
            "Default: BatchNorm running statistics, raw V/A mean. The published numbers come from "
            "main_affectnet_discrete.py:358 (validation over batches of 32, line 288), normalised "
            "with 32-face batch statistics, which running statistics approximate; the demo's "
            "single-face statistics (esr9@authors-demo) do not."
        ),
)

ESR9_AUTHORS_DEMO = make_variant(
    ESR9_BASE, "authors-demo",
    preprocessing=replace(ESR9_BASE.preprocessing, version="esr9-authors-demo-v1"),
    options={"branch_batchnorm": "per_image", "arousal": "official_unit"},
    note=(
        "Follows controller/cvision.py _predict: branches in a plain list (model/ml/esr_9.py:207) "
        "so BatchNorm uses each image's own statistics; arousal clip((a+1)/2, 0, 1) per branch "
        "(cvision.py:239) then the mean (cvision.py:242), as written by the CLI (model/utils/"
        "ufile.py:64). Arousal in [0, 1]. Not the default: it is not how the network was evaluated."
    ),
)

SPECS: tuple[ModelSpec, ...] = (ESR9_BASE, ESR9_AUTHORS_DEMO)


def vote(logits: np.ndarray) -> tuple[np.ndarray, int]:
    """Votes per label for one image's (branches, labels) logits, and the plurality winner
    (np.argmax takes the first maximum: ties go to the lowest label index, as officially)."""
    votes = np.bincount(logits.argmax(axis=1), minlength=logits.shape[1])
    return votes, int(votes.argmax())


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def official_arousal(branch_arousal: np.ndarray) -> float:
    """The demo's ensemble arousal: mean over branches of clip((a + 1) / 2, 0, 1)."""
    return float(np.clip((branch_arousal.astype(np.float64) + 1.0) / 2.0, 0.0, 1.0).mean())


def use_per_image_statistics(net: ESR9) -> ESR9:
    """Make the branches' BatchNorm layers normalise with the batch's own statistics.

    Dropping the running buffers makes torch use batch statistics even in eval mode and update
    nothing, so the loaded network stays as loaded and repeated calls give the same output.
    """
    import torch

    for branch in net.branches:
        for module in branch.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.track_running_stats = False
                module.running_mean = None
                module.running_var = None
                module.num_batches_tracked = None
    return net


def prepare(spec: ModelSpec, image_rgb: np.ndarray, face: Face) -> np.ndarray:
    return prepare_face(image_rgb, face, spec.preprocessing)


class ESR9Adapter:
    def __init__(self, spec: ModelSpec, net: TorchNet) -> None:
        self.spec = spec
        self.net = net
        self.labels = spec.canonical_labels

    def prepare(self, image_rgb: np.ndarray, face: Face) -> np.ndarray:
        return prepare(self.spec, image_rgb, face)

    def forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self.spec.options.get("branch_batchnorm") == "per_image":
            # Batch statistics are per call: one image per call, as the demo runs it.
            runs = [self.net.run(batch[i:i + 1]) for i in range(len(batch))]
            return {"logits": np.concatenate([to_numpy(logits) for logits, _ in runs]),
                    "affect": np.concatenate([to_numpy(affect) for _, affect in runs])}
        logits, affect = self.net.run(batch)
        return {"logits": to_numpy(logits), "affect": to_numpy(affect)}

    def decode(self, raw: dict[str, np.ndarray]) -> list[ModelOutput]:
        return [self._decode_one(logits, affect) for logits, affect in zip(raw["logits"], raw["affect"])]

    def _decode_one(self, logits: np.ndarray, affect: np.ndarray) -> ModelOutput:
        votes, winner = vote(logits)
        shares = votes / votes.sum()
        mean_softmax = _softmax(logits.astype(np.float64)).mean(axis=0)
        valence, arousal = affect.astype(np.float64).mean(axis=0)
        extras = {}
        if self.spec.options.get("arousal") == "official_unit":
            extras["arousal_raw_mean"] = float(arousal)
            arousal = official_arousal(affect[:, 1])
        return ModelOutput(
            label=self.labels[winner],
            probs={label: float(p) for label, p in zip(self.labels, shares)},
            valence=float(valence),
            arousal=float(arousal),
            extras={
                **extras,
                "mean_softmax": {label: float(p) for label, p in zip(self.labels, mean_softmax)},
                "branch_labels": [self.labels[i] for i in logits.argmax(axis=1)],
                "branch_valence": [float(v) for v in affect[:, 0]],
                "branch_arousal": [float(a) for a in affect[:, 1]],
            },
        )

    def release(self) -> None:
        self.net.release()


def _load_strict(module: torch.nn.Module, path: Path) -> None:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path.name} does not fit the ESR-9 layout: {exc}") from exc


def load(spec: ModelSpec, paths: list[Path], device: str, half: bool) -> ESR9Adapter:
    """Build ESR-9 from the base file and the nine branch files (verified paths, spec order)."""
    from core.models.nets.esr9 import ESR9, N_BRANCHES  # torch: only when a network is built

    if len(paths) != 1 + N_BRANCHES:
        raise ValueError(f"ESR-9 needs {1 + N_BRANCHES} files, got {len(paths)}")
    net = ESR9()
    _load_strict(net.base, paths[0])
    for branch, path in zip(net.branches, paths[1:]):
        _load_strict(branch, path)
    if spec.options.get("branch_batchnorm") == "per_image":
        use_per_image_statistics(net)
    return ESR9Adapter(spec, TorchNet(net, device, half))
