"""Offline trainer: data set, multi-task fine-tuning, calibration, evaluation, export."""
