"""The model at run time, one implementation for the worker and the trainer's evaluation.

- ``network``: the multi-head classifier and its OOD scorer (the trainer trains it).
- ``text``: casing marker, truncation, token ids, padding.
- ``packed``: the padding-free forward pass.
- ``artifact``: loading an artifact directory, refusing a bad one; no torch.
- ``weights``: the torch network rebuilt from the artifact's weights (torch variants,
  the trainer).
- ``devices``: which device ``model.device`` names; torch only where it must answer.
- ``protocol``: the ``Model`` protocol, a batch's output, one message's ``Prediction``,
  and the null model (numpy only: the pure modules type against it).
- ``runner``: ``Runner``, what every way of running an artifact shares (tokenize,
  temperatures, the per-head softmax, ``predict_texts``, warm-up).
- ``classifier``: ``Classifier``, the torch runner (one forward pass per batch, packed
  or padded); ``onnx_runtime``: ``OnnxClassifier``, the ONNX Runtime and OpenVINO one.
- ``variants``: the named ways to run an artifact (``MODEL__VARIANT``), which run here,
  which the accuracy rule allows; ``autotune`` and ``tuner`` pick one.
- ``errors``: what can be wrong with an artifact.

Nothing here imports the trainer: the worker runs without training code. torch is
imported only by the torch variants (``classifier``, ``packed``, ``network``,
``weights``) and by device resolution other than "cpu": the ONNX Runtime and OpenVINO
variants serve without it.
"""
