"""Experiments above single runs: the model x seed benchmark, hyper-parameter search on
validation, and the reports (results table, significance tests, plots)."""
