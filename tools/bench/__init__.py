"""The bench (``python -m tools.bench``): the notebook's approach, the model's ceiling
and the worker, side by side in one run, on one artifact and one message set.

A  notebook predict(): tokenize and run one message at a time
B  notebook batch_predict_optimized(): one tokenizer call + forward, a Python loop after
C  model-only ceiling: batches tokenized in advance, forward pass only, worker batch size
D  the worker end to end on the real broker: a backlog of 4 s (quick) or 8 s at C's speed,
   timed from the first commit until all are committed; every allowed variant in a full run
   (what auto's pick is judged against), and auto itself
E  latency under load: a producer paced at 50% of D, input -> committed output times
F  the worker with a null model vs a bare consume -> produce loop, same transactions
memory  the worker's pipeline (batch, tokenize, infer, route, serialize) without Kafka

Every figure runs ``--repeats`` times (3, quick too) and is reported with its runs and
spread; a ratio takes only figures whose spread is at most 10% (``figures``).

Modules: ``model`` (A, B, C and the message set, in this process), ``memory`` (decode
and the pipeline without Kafka), ``broker`` (D, E, F on a real broker, through
tools/worker_proc.py), ``run`` (the variants and one whole run), ``report`` (the table),
``figures`` (spreads, and which ratios may be taken), ``sweep`` (C over batch sizes),
``__main__`` (the command line).
"""
