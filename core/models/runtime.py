"""Network runners shared by adapters: an ONNX Runtime session and a torch module wrapper.

Both take a float32 NCHW numpy batch and return named numpy outputs, so adapters and card models
decode the same way whatever the file format. torch and onnxruntime are imported when a network
is built, so listing the model specs costs no model runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def onnx_providers(device: str) -> list[str]:
    """CUDA first when asked for and available in this onnxruntime build, CPU always last."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider"] if device.startswith("cuda") else []
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


class OnnxNet:
    """An ONNX model with one image input; outputs returned by their graph names."""

    def __init__(self, path: Path, device: str = "cpu", input_name: str | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=onnx_providers(device))
        inputs = [i.name for i in self.session.get_inputs()]
        if input_name is not None and input_name not in inputs:
            raise ValueError(f"{path.name}: no input named {input_name!r} (inputs: {inputs})")
        if input_name is None and len(inputs) != 1:
            raise ValueError(f"{path.name}: expected one input, found {inputs}")
        self.input_name = input_name or inputs[0]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.precision = "fp32"

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})
        return dict(zip(self.output_names, values))

    def release(self) -> None:
        self.session = None


class TorchNet:
    """A torch module in eval mode on a device, optionally in half precision."""

    def __init__(self, module: torch.nn.Module, device: str = "cpu", half: bool = False) -> None:
        import torch

        self.device = torch.device(device)
        self.dtype = torch.float16 if half else torch.float32
        self.module = module.to(self.device, self.dtype).eval()
        self.precision = "fp16" if half else "fp32"

    def run(self, batch: np.ndarray) -> object:
        import torch

        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device, self.dtype)
            return self.module(tensor)

    def release(self) -> None:
        self.module = None
        if self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()
