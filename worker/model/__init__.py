"""The model at run time, one implementation for the worker and the trainer's evaluation.

- ``network``: the multi-head classifier and its OOD scorer (the trainer trains it).
- ``text``: casing marker, truncation, token ids, padding.
- ``packed``: the padding-free forward pass.
- ``artifact``: loading an artifact directory, refusing a bad one.
- ``protocol``: the ``Model`` protocol, a batch's output, one message's ``Prediction``,
  and the null model (numpy only: the pure modules type against it).
- ``classifier``: ``Classifier``, which runs an artifact (temperatures, one forward pass
  per batch).
- ``errors``: what can be wrong with an artifact.

Nothing here imports the trainer: the worker runs without training code.
"""
