"""Offline trainer: data set, multi-task fine-tuning, calibration, evaluation, export.

The model it trains and the artifact loader live in ``worker.model``, which the worker
runs too.
"""
