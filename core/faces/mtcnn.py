"""MTCNN networks and cascade: our implementation of Zhang et al. (2016) on facenet-pytorch's weights.

Kept apart from ``core.faces.detection`` so that importing the face stage (pages, the command
line) does not import torch and torchvision; ``get_detector("mtcnn")`` imports this module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms

from core.faces.crops import Face
from core.faces.detection import MIN_FACE, MTCNN_VERSION, PYRAMID_FACTOR, THRESHOLDS, check_rgb, resolve_mtcnn

# ---------------------------------------------------------------------------------------------
# MTCNN networks (attribute names are the state_dict keys of the published files)


class PNet(nn.Module):
    """Proposal net: fully convolutional, one 12x12 window per output cell (stride 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)  # not-face / face logits
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)  # box offsets

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(offsets (N, 4, h, w), face probability (N, h, w))."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), self.conv4_1(x).softmax(dim=1)[:, 1]


def _flatten_like_tensorflow(x: torch.Tensor) -> torch.Tensor:
    """The dense layers were converted from TensorFlow, which flattens (W, H, C) per sample."""
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class RNet(nn.Module):
    """Refine net on 24x24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(offsets (N, 4), face probability (N,))."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_flatten_like_tensorflow(x)))
        return self.dense5_2(x), self.dense5_1(x).softmax(dim=1)[:, 1]


class ONet(nn.Module):
    """Output net on 48x48 crops: final score, box offsets and five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(offsets (N, 4), landmarks (N, 10): x1..x5 then y1..y5 in box units, face prob (N,))."""
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(_flatten_like_tensorflow(x)))
        return self.dense6_2(x), self.dense6_3(x), self.dense6_1(x).softmax(dim=1)[:, 1]


# ---------------------------------------------------------------------------------------------
# MTCNN box arithmetic (facenet-pytorch's conventions, including its +1 pixel quirks)


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - 127.5) * 0.0078125


def _pyramid_scales(height: int, width: int, min_face: int, factor: float) -> list[float]:
    """Scales at which a 12 px window covers faces from ``min_face`` px to the whole image."""
    scale = 12.0 / min_face
    side = min(height, width) * scale
    scales = []
    while side >= 12:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def _grid_boxes(
    offsets: torch.Tensor, prob: torch.Tensor, scale: float, threshold: float
) -> torch.Tensor:
    """P-Net cells above ``threshold`` as rows (x1, y1, x2, y2, score, 4 offsets), image pixels."""
    rows, cols = torch.nonzero(prob >= threshold, as_tuple=True)
    cell = torch.stack([cols, rows], dim=1).to(offsets.dtype)
    start = ((2 * cell + 1) / scale).floor()
    end = ((2 * cell + 12) / scale).floor()
    return torch.cat([start, end, prob[rows, cols, None], offsets[:, rows, cols].T], dim=1)


def _apply_offsets(boxes: torch.Tensor, offsets: torch.Tensor, plus_one: bool) -> torch.Tensor:
    """Shift each corner by offset x box side (P-Net sides exclude the +1, later stages use it)."""
    extra = 1 if plus_one else 0
    width = boxes[:, 2] - boxes[:, 0] + extra
    height = boxes[:, 3] - boxes[:, 1] + extra
    sides = torch.stack([width, height, width, height], dim=1)
    return torch.cat([boxes[:, :4] + offsets * sides, boxes[:, 4:5]], dim=1)


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each box to a square around its centre (side = longer side)."""
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(width, height)
    x1 = boxes[:, 0] + width * 0.5 - side * 0.5
    y1 = boxes[:, 1] + height * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side, boxes[:, 4]], dim=1)


def _crop_bounds(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Integer (x1, y1, x2, y2) slices of the boxes clipped to the image (no zero padding)."""
    corners = boxes[:, :4].trunc().to(torch.int64)
    x1 = corners[:, 0].clamp(min=1) - 1
    y1 = corners[:, 1].clamp(min=1) - 1
    x2 = corners[:, 2].clamp(max=width)
    y2 = corners[:, 3].clamp(max=height)
    return torch.stack([x1, y1, x2, y2], dim=1)


def _crops(
    image: torch.Tensor, boxes: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Area-resampled, normalised ``size`` x ``size`` crops; boxes with no pixels are dropped."""
    bounds = _crop_bounds(boxes, image.shape[2], image.shape[3])
    valid = (bounds[:, 2] > bounds[:, 0]) & (bounds[:, 3] > bounds[:, 1])
    crops = [
        F.interpolate(image[:, :, y1:y2, x1:x2], size=(size, size), mode="area")
        for x1, y1, x2, y2 in bounds[valid].tolist()
    ]
    if not crops:
        return image.new_zeros((0, 3, size, size)), boxes[valid]
    return _normalise(torch.cat(crops)), boxes[valid]


def nms_min_overlap(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS where overlap = intersection / smaller area (inclusive pixel sides).

    Unlike IoU this also drops a small box nested inside a more confident big one. Returns kept
    indices, most confident first.
    """
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores, kind="stable")[::-1]
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        inter_w = np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1
        inter_h = np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1
        inter = np.maximum(0.0, inter_w) * np.maximum(0.0, inter_h)
        overlap = inter / np.minimum(area[best], area[rest])
        keep.append(best)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _iou_nms(boxes: torch.Tensor, threshold: float) -> torch.Tensor:
    return boxes[nms(boxes[:, :4], boxes[:, 4], threshold)]


class MTCNNDetector:
    """The three-stage cascade with facenet-pytorch's defaults (min face 20 px, factor 0.709)."""

    version = MTCNN_VERSION

    def __init__(self, pnet: PNet, rnet: RNet, onet: ONet, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.pnet, self.rnet, self.onet = (net.to(self.device).eval() for net in (pnet, rnet, onet))

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        check_rgb(image_rgb)
        # np.array copies: decoded images are often read-only, which torch warns about.
        pixels = torch.from_numpy(np.array(image_rgb)).to(self.device)
        image = pixels.permute(2, 0, 1).unsqueeze(0).float()
        with torch.inference_mode():
            boxes = self._propose(image)
            if len(boxes):
                boxes = self._refine(image, boxes)
            if not len(boxes):
                return []
            boxes, points = self._finish(image, boxes)
        return [_to_face(b, p) for b, p in zip(boxes.cpu().numpy(), points.cpu().numpy())]

    def _propose(self, image: torch.Tensor) -> torch.Tensor:
        """Stage 1: P-Net over the pyramid, NMS per scale (IoU 0.5) and overall (IoU 0.7)."""
        height, width = image.shape[2:]
        found = []
        for scale in _pyramid_scales(height, width, MIN_FACE, PYRAMID_FACTOR):
            size = (int(height * scale + 1), int(width * scale + 1))
            offsets, prob = self.pnet(_normalise(F.interpolate(image, size=size, mode="area")))
            found.append(_iou_nms(_grid_boxes(offsets[0], prob[0], scale, THRESHOLDS[0]), 0.5))
        if not found:
            return image.new_zeros((0, 5))
        boxes = _iou_nms(torch.cat(found), 0.7)
        return _square(_apply_offsets(boxes[:, :5], boxes[:, 5:9], plus_one=False))

    def _refine(self, image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Stage 2: R-Net rescoring on 24 px crops, NMS (IoU 0.7), regression, squaring."""
        crops, boxes = _crops(image, boxes, 24)
        offsets, prob = self.rnet(crops)
        keep = prob > THRESHOLDS[1]
        boxes = torch.cat([boxes[keep, :4], prob[keep, None]], dim=1)
        picked = nms(boxes[:, :4], boxes[:, 4], 0.7)
        return _square(_apply_offsets(boxes[picked], offsets[keep][picked], plus_one=True))

    def _finish(
        self, image: torch.Tensor, boxes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 3: O-Net score, landmarks (relative to the input box), regression, min-NMS."""
        crops, boxes = _crops(image, boxes, 48)
        offsets, marks, prob = self.onet(crops)
        keep = prob > THRESHOLDS[2]
        boxes = torch.cat([boxes[keep, :4], prob[keep, None]], dim=1)
        marks = marks[keep]
        width = boxes[:, 2] - boxes[:, 0] + 1
        height = boxes[:, 3] - boxes[:, 1] + 1
        xs = width[:, None] * marks[:, :5] + boxes[:, 0:1] - 1
        ys = height[:, None] * marks[:, 5:] + boxes[:, 1:2] - 1
        points = torch.stack([xs, ys], dim=2)
        boxes = _apply_offsets(boxes, offsets[keep], plus_one=True)
        picked = nms_min_overlap(boxes[:, :4].cpu().numpy(), boxes[:, 4].cpu().numpy(), 0.7)
        picked = torch.from_numpy(picked).to(boxes.device)
        return boxes[picked], points[picked]


def _to_face(box: np.ndarray, marks: np.ndarray) -> Face:
    return Face(
        box=tuple(float(v) for v in box[:4]),
        score=float(box[4]),
        landmarks=tuple((float(x), float(y)) for x, y in marks),
    )


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    # Plain tensors only: weights_only refuses anything that would execute pickled code.
    return torch.load(path, map_location="cpu", weights_only=True)


def load_mtcnn(device: str = "cpu") -> MTCNNDetector:
    """MTCNN with the verified published weights (strict key match)."""
    nets = (PNet(), RNet(), ONet())
    for net, path in zip(nets, resolve_mtcnn()):
        net.load_state_dict(_load_state_dict(path), strict=True)
    return MTCNNDetector(*nets, device=device)
