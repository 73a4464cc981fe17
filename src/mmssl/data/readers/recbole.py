"""RecBole atomic files: ``NAME.inter`` with typed headers such as ``user_id:token``.

Not split: the import needs ``--split``. Ids are re-indexed in ascending original-id order
(numeric when every id is an integer); ``rating`` and ``timestamp`` are used when present.
``NAME.item``, when present beside ``NAME.inter``, becomes the dataset's items table.
"""

from __future__ import annotations

from pathlib import Path

from mmssl.data.pipeline import ImportOptions, RawInteractions
from mmssl.data.readers.common import find_inter, read_token_table
from mmssl.data.table import Table


def read_recbole(src: Path, opts: ImportOptions) -> RawInteractions:
    """Read ``NAME.inter`` in the folder ``src`` (or the file ``src``)."""
    path = find_inter(src, opts.name, default_name=src.name if src.is_dir() else None)
    raw = read_token_table(Table.read(path), opts, src_dir=path.parent, schema_known=True)
    if path.with_suffix(".item").is_file():  # titles and other item columns
        raw.items_path = str(path.with_suffix(".item"))
    return raw
