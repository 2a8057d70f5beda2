"""The model at run time, one implementation for the worker and the trainer's evaluation.

- ``network``: the multi-head classifier and its OOD scorer (the trainer trains it).
- ``text``: casing marker, truncation, token ids, padding.
- ``packed``: the padding-free forward pass.
- ``artifact``: loading an artifact directory, refusing a bad one.
- ``classifier``: the ``Model`` protocol, ``Classifier`` (temperatures, one forward
  pass per batch) and the null model.
- ``errors``: what can be wrong with an artifact.

Nothing here imports the trainer: the worker's image carries no training code.
"""
