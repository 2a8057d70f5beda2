"""Experiment trackers for ``support-trainer train --report-to``: MLflow and TensorBoard.

``reporter`` is the small interface the trainer calls (params, each epoch, the finished
artifact); ``summary`` turns a run's config, data and metrics into what trackers take;
``mlflow_run`` and ``tensorboard_log`` are the two trackers. Only this package imports
mlflow or tensorboard (an import rule, tools/check_imports.py): they come with the
``tracking`` extra, which neither the worker nor a plain training run needs.
"""
