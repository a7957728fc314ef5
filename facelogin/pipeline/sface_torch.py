"""SFace's network rebuilt in torch from the same ONNX file, for oneDNN's AVX-512 convolutions.

The file (OpenCV's model zoo, block-quantised) is read by OpenCV, which dequantises its weights; the
graph is a MobileNet: a 3x3 convolution, thirteen depthwise-separable pairs, each convolution followed
by a batch norm and a PReLU, then a batch norm, a fully connected layer to 128 numbers and a last batch
norm. Every batch norm is folded into the convolution or the fully connected layer before it (or, for the
one after the last PReLU, into the layer after it), so torch runs 27 convolutions, 27 PReLUs and one
matrix product. The arithmetic is float32 like OpenCV's, in another order: the vectors agree to rounding
(tests/pipeline/test_sface.py), and bench.accuracy gave the same decision for every attempt with either
runtime (README, "Speed").

Why: on this machine's CPU one face took 20.4-20.8 ms in OpenCV's dnn and 10-11 ms here, one thread
(7.8 ms a face in fours); and unlike OpenCV's graph (built for one face) it takes several faces at once.

The convolutions and PReLUs run on oneDNN's own tensors (``onednn_features``), not through
``nn.Conv2d``: on one thread and fewer than 16 faces torch sends every 1x1 convolution (the thirteen
pointwise layers, nine tenths of the arithmetic) to its reference path, a GEMM that ran at half of
oneDNN's speed on this AMD CPU (16.0 -> 10-11 ms a face, 15.2 -> 7.8 in fours). The sums come out in
another order again, so the vectors move by rounding (< 3e-6); the decisions were compared attempt by
attempt (README, "Speed").
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from . import errors

log = logging.getLogger(__name__)

# (input channels, output channels, stride) of the depthwise-separable pairs conv_2 .. conv_14.
PAIRS = ((32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2), *((512, 512, 1),) * 5, (512, 1024, 2), (1024, 1024, 1))
MEAN, SCALE = 127.5, 0.0078125  # the graph's own input scaling: (pixel - 127.5) / 128
# The batch norms' epsilons, which OpenCV applies but does not report: measured from its layer outputs
# (each channel's slope is weight / sqrt(var + eps)), 1e-3 after every convolution and 2e-5 (MXNet's
# default) in the head. ``build`` checks the result against OpenCV's graph on a probe crop.
EPS_CONV = 1e-3
EPS_HEAD = 2e-5


def _params(net: Any, name: str) -> list[np.ndarray]:
    try:
        layer = net.getLayer(f"onnx_node!{name}")
    except Exception as exc:  # cv2.error: no such layer
        raise errors.ModelUnavailable(f"SFace's graph has no layer {name}: not the expected network.", reason="unreadable") from exc
    return [np.asarray(b, dtype=np.float64) for b in layer.blobs]


def _norm(net: Any, name: str, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """A batch norm as per-channel (scale, shift)."""
    mean, var, weight, bias = (b.ravel() for b in _params(net, name))
    scale = weight / np.sqrt(var + eps)
    return scale, bias - mean * scale


def build(net: Any) -> Any:
    """SFace's network as a torch module (eval mode, channels-last) from OpenCV's reading of the file
    (``cv2.dnn.readNet``): (n, 3, 112, 112) float32 crops, RGB in 0..255 as OpenCV's graph takes them, to
    (n, 128) unnormalised vectors. Raises ModelUnavailable unless it gives OpenCV's vector for a probe."""
    import torch
    from torch import nn

    scalars = [float(np.asarray(net.getLayer(n).blobs[0]).ravel()[0]) for n in ("scalar_op1", "scalar_op2")]
    if scalars != [MEAN, SCALE]:
        raise errors.ModelUnavailable(f"SFace's input scaling is {scalars}, not (127.5, 1/128).", reason="unreadable")

    def folded(conv: str, norm: str, groups: int, stride: int) -> nn.Conv2d:
        (weight,) = _params(net, conv)
        scale, shift = _norm(net, norm, EPS_CONV)
        out, per_group, k, _ = weight.shape
        layer = nn.Conv2d(per_group * groups, out, k, stride=stride, padding=k // 2, groups=groups, bias=True)
        layer.weight.data = torch.from_numpy((weight * scale[:, None, None, None]).astype(np.float32))
        layer.bias.data = torch.from_numpy(shift.astype(np.float32))
        return layer

    def prelu(name: str) -> nn.PReLU:
        (slope,) = _params(net, name)
        layer = nn.PReLU(slope.size)
        layer.weight.data = torch.from_numpy(slope.ravel().astype(np.float32))
        return layer

    layers: list[nn.Module] = [folded("conv_1_conv2d", "conv_1_batchnorm", 1, 1), prelu("conv_1_relu")]
    for index, (channels_in, channels_out, stride) in enumerate(PAIRS, start=2):
        dw = folded(f"conv_{index}_dw_conv2d", f"conv_{index}_dw_batchnorm", channels_in, stride)
        pw = folded(f"conv_{index}_conv2d", f"conv_{index}_batchnorm", 1, 1)
        if pw.weight.shape[:2] != (channels_out, channels_in):
            raise errors.ModelUnavailable(f"SFace's conv_{index} is {tuple(pw.weight.shape)}: not the expected network.", reason="unreadable")
        layers += [dw, prelu(f"conv_{index}_dw_relu"), pw, prelu(f"conv_{index}_relu")]

    # bn1 (after the last PReLU) and fc1 (after the product) folded into the fully connected layer.
    weight, bias = _params(net, "pre_fc1")
    scale1, shift1 = _norm(net, "bn1", EPS_HEAD)
    scale2, shift2 = _norm(net, "fc1", EPS_HEAD)
    per_column = np.repeat(scale1, weight.shape[1] // scale1.size)  # flattened (channel, row, column)
    fc = nn.Linear(weight.shape[1], weight.shape[0])
    fc.weight.data = torch.from_numpy((weight * per_column[None, :] * scale2[:, None]).astype(np.float32))
    offset = weight @ np.repeat(shift1, weight.shape[1] // shift1.size) + bias.ravel()
    fc.bias.data = torch.from_numpy((offset * scale2 + shift2).astype(np.float32))

    if torch.backends.mkldnn.is_available():
        try:
            model = _assemble(onednn_features(layers), fc, onednn=True)
            _check(model, net)
            return model
        except (RuntimeError, errors.ModelUnavailable) as exc:
            # A torch build or CPU where oneDNN's calls fail or disagree: torch's own layers, slower.
            log.warning("SFace's layers on oneDNN are unusable here (%s); running them as torch modules", exc)
    model = _assemble(nn.Sequential(*layers).to(memory_format=torch.channels_last), fc, onednn=False)
    _check(model, net)
    return model


def _assemble(features: Any, fc: Any, *, onednn: bool) -> Any:
    """The whole network: the input scaling, ``features`` (on oneDNN tensors when ``onednn``), ``fc``."""
    import torch
    from torch import nn

    class SFace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = features
            self.fc = fc
            self.onednn = onednn

        def forward(self, crops: torch.Tensor) -> torch.Tensor:
            x = (crops - MEAN) * SCALE
            x = self.features(x.to_mkldnn()).to_dense() if self.onednn else self.features(x)
            return self.fc(x.flatten(1))

    model = SFace().eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def onednn_features(layers: list[Any]) -> Any:
    """The convolutions and PReLUs as oneDNN calls on oneDNN tensors, weights reordered once: what
    ``torch.utils.mkldnn.to_mkldnn`` builds, without its TorchScript modules (deprecated in torch 2.14)."""
    import torch
    from torch import nn

    class Features(nn.Module):
        # The layers come in as an argument, not from the enclosing scope: a closure would keep the
        # dense weights alive beside their oneDNN copies for the life of the model.
        def __init__(self, layers: list[Any]) -> None:
            super().__init__()
            self.steps: list[tuple[str, tuple[Any, ...]]] = []
            for layer in layers:
                if isinstance(layer, nn.Conv2d):
                    args = (layer.padding, layer.stride, layer.dilation, layer.groups)
                    weight = torch._C._nn.mkldnn_reorder_conv2d_weight(layer.weight.detach().contiguous().to_mkldnn(), *args)
                    self.steps.append(("conv", (weight, layer.bias.detach().to_mkldnn(), *args)))
                else:
                    self.steps.append(("prelu", (layer.weight.detach().to_mkldnn(),)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for kind, params in self.steps:
                x = torch.mkldnn_convolution(x, *params) if kind == "conv" else torch.prelu(x, *params)
            return x

    return Features(layers)


def _check(model: Any, net: Any) -> None:
    """The rebuilt network must give OpenCV's vector for a probe crop (to rounding): a file with other
    layers, or epsilons other than measured, fails here instead of embedding faces wrongly."""
    import torch

    probe = (np.random.default_rng(0).random((1, 3, 112, 112)) * 255).astype(np.float32)
    net.setInput(probe)
    expected = np.asarray(net.forward(), dtype=np.float64).ravel()
    with torch.inference_mode():
        got = model(torch.from_numpy(probe).contiguous(memory_format=torch.channels_last)).numpy().astype(np.float64).ravel()
    cosine = float(got @ expected / (np.linalg.norm(got) * np.linalg.norm(expected)))
    if not cosine > 1 - 1e-6:
        raise errors.ModelUnavailable(f"SFace rebuilt in torch disagrees with OpenCV (cosine {cosine:.7f}).", reason="unreadable")
