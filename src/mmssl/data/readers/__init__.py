"""One reader per import format; each turns a source into
:class:`~mmssl.data.pipeline.RawInteractions` for :func:`~mmssl.data.pipeline.finish`.

- :mod:`.mmssl`: the MMSSL authors' ``train.json`` / ``val.json`` / ``test.json``;
- :mod:`.mmrec`: MMRec's ``NAME.inter`` with ``x_label``;
- :mod:`.recbole`: RecBole atomic files (typed headers, unsplit);
- :mod:`.csv`: one interaction table (``.csv``, ``.tsv``, ``.parquet``) or a DataFrame.
"""
