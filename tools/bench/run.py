"""One whole bench run: the variants of the artifact, every figure, and their ratios."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from schemas.labels import HEADS
from tools.bench.broker import bench_bare, bench_latency, bench_worker
from tools.bench.figures import Figures
from tools.bench.memory import bench_decode, bench_memory
from tools.bench.model import (
    bench_a,
    bench_b,
    bench_c,
    head_accuracy,
    length_stats,
    message_set,
)
from worker.model import autotune, variants
from worker.model.artifact import load_artifact
from worker.model_thread import model_executor
from worker.serving import pin_tokenizer_threads
from worker.settings import BatchingSettings

T = TypeVar("T")


@dataclass(frozen=True)
class Candidate:
    """One way the bench runs the artifact: a variant of worker.model.variants by name
    (``variant``), or (``variant`` None) the torch variant at the bench's ``--dtype``,
    padding-free or ``padded``: the same variant in this process and in the workers."""

    name: str
    variant: str | None = None
    padded: bool = False

    def model_variant(self, device: str, dtype: str) -> str:
        return self.variant or variants.torch_variant(dtype, device, self.padded)

    def classifier(self, model: Path, device: str, dtype: str) -> Any:
        name = self.model_variant(device, dtype)
        return variants.build(name, load_artifact(model), device)  # type: ignore[arg-type]

    def env(self, device: str, dtype: str) -> dict[str, str]:
        return {"SUPPORT_WORKER_MODEL__VARIANT": self.model_variant(device, dtype)}


PADDED = Candidate("padded", padded=True)
PACKED = Candidate("padding-free")  # the worker's default
# Faster settings, each used for d_best_over_a only if the accuracy rule allows it.
CPU_FAST = (
    Candidate("int8, padding-free", variant="torch-int8"),
    Candidate("bf16 autocast, padding-free", variant="torch-bf16"),
)
# The ONNX Runtime and OpenVINO variants, where the artifact has their files.
RUNTIMES = tuple(Candidate(name, variant=name) for name in variants.RUNTIME_FILES)
# The bench's name for each variant autotune may pick.
BY_VARIANT = {v.variant: v.name for v in (*CPU_FAST, *RUNTIMES)} | {"torch-fp32": PACKED.name}
AUTO_ENV = {"SUPPORT_WORKER_MODEL__VARIANT": "auto"}
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu() -> dict[str, Any]:
    """The CPU's model name and the flags that decide which variant is fastest."""
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = variants.cpu_flags()
    return {"model": name, "flags": {f: f in flags for f in CPU_FLAGS}}


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def accuracy_change(acc: Mapping[str, float], base: Mapping[str, float]) -> dict[str, float]:
    """Per head, this variant's accuracy minus the base's (a fraction; -0.01 is -1 point)."""
    return {h: acc[h] - base[h] for h in HEADS}


def best_variant(c: Mapping[str, Mapping[str, Any]]) -> str:
    """The fastest variant in C among those whose accuracy holds."""
    return max(
        (name for name, v in c.items() if v["accuracy_ok"]), key=lambda n: c[n]["msgs_per_s"]
    )


# How long one run of a broker figure lasts at the rate expected of it: D on a backlog of
# that many seconds, F's loops on a fixed count (they run 10-20x faster than D). Sized by
# time, not a message count: 1,000 messages were under a second of D and 0.1 s of F in
# quick mode, and two quick runs then differed by up to 2x (issue 25).
D_SECONDS = {True: 4.0, False: 8.0}
F_MESSAGES = {True: 30_000, False: 60_000}


def sized(texts: Sequence[str], rate_: float, seconds: float) -> list[str]:
    """``texts`` cycled to about ``seconds`` of messages at ``rate_`` (at least one pass)."""
    n = max(len(texts), int(rate_ * seconds))
    return [texts[i % len(texts)] for i in range(n)]


def run(args: Any) -> dict[str, Any]:
    quick = args.quick
    repeats = args.repeats or 3  # a spread needs repeats, in quick mode too
    batching = BatchingSettings(
        max_batch_size=args.batch_size,
        max_batch_tokens=args.batch_tokens,
        max_wait_ms=args.max_wait_ms,
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    pin_tokenizer_threads()  # as the worker does, so memory and C see the same setup
    # Every model call of this process on one thread, as in the worker (worker.model_thread):
    # the memory pipeline's forward passes then share one OpenMP pool with C's.
    model_thread = model_executor()

    def on_model(fn: Callable[..., T], *fn_args: Any) -> T:
        return model_thread.submit(fn, *fn_args).result()

    fig = Figures()

    def measured(name: str, fn: Callable[..., float], *fn_args: Any) -> float:
        return fig.add(name, [fn(*fn_args) for _ in range(repeats)])

    loaded = load_artifact(args.model)
    base = on_model(PADDED.classifier, args.model, args.device, args.dtype)
    n = 1000 if quick else 5000
    examples, source = message_set(n)
    texts = [ex.text for ex in examples]
    on_model(base.warmup, args.batch_size)
    report: dict[str, Any] = {
        "machine": {
            "cpu": cpu(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "device": str(base.device),
            "dtype": str(base.dtype),
        },
        "model": {
            **base.model_info,
            "parameters": sum(p.numel() for p in loaded.model.parameters()),
        },
        "batching": batching.model_dump(),
        "messages": {"source": source, "n": n, "tokens": length_stats(base, texts)},
        "repeats": repeats,
        "results": {},
    }
    r = report["results"]
    a_texts = texts[: 200 if quick else 1000]
    r["a_notebook_per_message"] = measured("a", on_model, bench_a, loaded, a_texts)
    r["b_notebook_batch"] = measured("b", on_model, bench_b, loaded, texts, args.batch_size)

    # C for every variant, with its accuracy change against the padded base precision.
    here = [
        v
        for v in (*CPU_FAST, *RUNTIMES)
        if variants.unavailable(v.variant, loaded, "cpu") is None  # type: ignore[arg-type]
    ]
    if variants.unavailable("torch-bf16", loaded, "cpu") == variants.NO_BF16:
        r["skipped_bf16"] = "this CPU has no bf16 instructions: autocast measured 9x slower"
    runs_here = [PADDED, PACKED, *(here if base.device.type == "cpu" else ())]
    base_acc = on_model(head_accuracy, base, examples, args.batch_size)
    models: dict[str, Any] = {}
    c_seconds = 1.0 if quick else 2.0
    for v in runs_here:
        clf = base if v is PADDED else on_model(v.classifier, args.model, args.device, args.dtype)
        on_model(clf.warmup, args.batch_size)
        runs = [on_model(bench_c, clf, texts, args.batch_size, c_seconds) for _ in range(repeats)]
        acc = base_acc if v is PADDED else on_model(head_accuracy, clf, examples, args.batch_size)
        change = accuracy_change(acc, base_acc)
        models[v.name] = clf
        r.setdefault("c", {})[v.name] = {
            "precision": clf.precision,
            "msgs_per_s": fig.add(f"c/{v.name}", [x["msgs_per_s"] for x in runs]),
            "runs": [x["msgs_per_s"] for x in runs],
            "full_batch_ms": _median([x["full_batch_ms"] for x in runs]),
            # What a padded batch of these messages would be (the same for every variant).
            "padding_fraction": runs[0]["padding_fraction"],
            "accuracy_change": change,
            "accuracy_ok": variants.allowed(change),
        }
    c = r["c"]
    r["c_model_ceiling"] = c[PADDED.name]["msgs_per_s"]
    r["c_padding_fraction"] = c[PADDED.name]["padding_fraction"]
    r["c_full_batch_ms"] = c[PADDED.name]["full_batch_ms"]
    r["best_variant"] = best_variant(c)
    best = next(v for v in runs_here if v.name == r["best_variant"])
    # What MODEL__VARIANT=auto serves on this machine: the worker's own autotune.
    if loaded.manifest.variants is not None:
        report["variants_accuracy"] = loaded.manifest.variants.model_dump()
    choice = on_model(autotune.autotune, loaded, str(base.device), args.batch_size, args.threads)
    r["auto"] = {
        "variant": choice.variant,
        "c_name": BY_VARIANT.get(choice.variant),
        "autotune_msgs_per_s": choice.msgs_per_s,
        "skipped": choice.skipped,
    }
    del choice

    # Pydantic validation must not dominate: its cost per message beside the forward's.
    r["decode_us_per_msg"] = measured("decode_us", bench_decode, texts)
    forward_us = 1e6 / c[PACKED.name]["msgs_per_s"]
    no_overlap = batching.model_copy(update={"overlap": False})
    packed = models[PACKED.name]
    r["memory_pipeline"] = measured("memory", bench_memory, packed, texts, batching, model_thread)
    r["memory_pipeline_no_overlap"] = measured(
        "memory_no_overlap", bench_memory, packed, texts, no_overlap, model_thread
    )
    ratios: dict[str, float | None] = {
        "decode_over_forward": r["decode_us_per_msg"] / forward_us
        if fig.stable("decode_us") and fig.stable(f"c/{PACKED.name}")
        else None,
        "memory_over_c": fig.ratio("memory", f"c/{PADDED.name}"),
        "memory_over_c_packed": fig.ratio("memory", f"c/{PACKED.name}"),
    }
    if args.source == "kafka":
        ratios |= broker_figures(args, r, fig, texts, runs_here, best, loaded, repeats)
    auto_c = r["auto"]["c_name"]
    ratios["c_auto_over_c_fp32_padded"] = (
        fig.ratio(f"c/{auto_c}", f"c/{PADDED.name}") if auto_c in c else None
    )
    report["ratios"] = ratios
    report["spread"] = fig.report()
    return report


def broker_figures(
    args: Any,
    r: dict[str, Any],
    fig: Figures,
    texts: list[str],
    runs_here: Sequence[Candidate],
    best: Candidate,
    loaded: Any,
    repeats: int,
) -> dict[str, float | None]:
    """D, E and F on the broker, into ``r``; the ratios that use them."""
    quick = args.quick
    c = r["c"]
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or "127.0.0.1:9092"
    env = {
        "SUPPORT_WORKER_BATCHING__MAX_BATCH_SIZE": str(args.batch_size),
        "SUPPORT_WORKER_BATCHING__MAX_BATCH_TOKENS": str(args.batch_tokens),
        "SUPPORT_WORKER_BATCHING__MAX_WAIT_MS": str(args.max_wait_ms),
        "SUPPORT_WORKER_MODEL__DEVICE": args.device,
    }
    if args.threads:
        env["SUPPORT_WORKER_MODEL__THREADS"] = str(args.threads)
    f_texts = sized(texts, 1.0, F_MESSAGES[quick])

    # Warm the broker first: a JVM started a minute ago is still compiling its hot
    # paths, and the workers measured first would pay for that (quick runs right
    # after `kafka up` measured D 10-30% low). F's bare loop, for a while, discarded.
    warm_until = time.monotonic() + (15 if quick else 30)
    while time.monotonic() < warm_until:
        bench_bare(bootstrap, f_texts, args.batch_size)

    def d(name: str, extra: dict[str, str], c_name: str) -> dict[str, Any]:
        # A backlog of D_SECONDS at the model's own speed: D is at most C.
        backlog = sized(texts, c[c_name]["msgs_per_s"], D_SECONDS[quick])
        runs = [
            bench_worker(bootstrap, args.model, backlog, {**env, **extra}) for _ in range(repeats)
        ]
        keys = ("mean_batch", "mean_inference_ms")
        return {
            "msgs_per_s": fig.add(f"d/{name}", [x["msgs_per_s"] for x in runs]),
            "runs": [x["msgs_per_s"] for x in runs],
            "variant": runs[-1]["variant"],
            "variants": [x["variant"] for x in runs],
            "messages": len(backlog),
            **{k: _median([x[k] for x in runs]) for k in keys},
        }

    def env_of(v: Candidate) -> dict[str, str]:
        return v.env(args.device, args.dtype)

    fastest_c = max(c, key=lambda k: c[k]["msgs_per_s"])
    r["d"] = {
        PACKED.name: d(PACKED.name, env_of(PACKED), PACKED.name),
        "padding-free, no overlap": d(
            "padding-free, no overlap",
            {**env_of(PACKED), "SUPPORT_WORKER_BATCHING__OVERLAP": "false"},
            PACKED.name,
        ),
        PADDED.name: d(PADDED.name, env_of(PADDED), PADDED.name),
    }
    # Every allowed variant that runs here, pinned, in a full run (the best by C in a quick
    # one): what auto's pick is judged against.
    names, _ = autotune.candidates(loaded, str(args.device))
    allowed = {BY_VARIANT[v] for v in names if v in BY_VARIANT}
    pinned = [best] if quick else [v for v in runs_here if v.name in allowed]
    for v in (v for v in pinned if v.name not in r["d"]):
        r["d"][v.name] = d(v.name, env_of(v), v.name)
    r["d"]["auto"] = d("auto", AUTO_ENV, fastest_c)
    r["d_worker"] = r["d"][PACKED.name]["msgs_per_s"]
    r["d_worker_best"] = r["d"][best.name]["msgs_per_s"]
    served = BY_VARIANT.get(r["d"]["auto"]["variant"] or "")
    d_allowed = {k: v["msgs_per_s"] for k, v in r["d"].items() if k in allowed}
    best_d = max(d_allowed, key=d_allowed.__getitem__)
    r["d_best_allowed"] = {
        "variant": best_d,
        "msgs_per_s": d_allowed[best_d],
        "auto_served": served,
    }
    null = {**env, "SUPPORT_WORKER_MODEL__VARIANT": "null"}
    r["f_worker_null_model"] = fig.add(
        "f_worker_null",
        [bench_worker(bootstrap, args.model, f_texts, null)["msgs_per_s"] for _ in range(repeats)],
    )
    r["f_bare_loop"] = fig.add(
        "f_bare", [bench_bare(bootstrap, f_texts, args.batch_size) for _ in range(repeats)]
    )
    r["f_bare_is_ceiling"] = r["f_bare_loop"] >= r["f_worker_null_model"]
    lats = [
        bench_latency(bootstrap, args.model, texts, 0.5 * r["d_worker"], 6 if quick else 20, env)
        for _ in range(repeats)
    ]
    lat = {k: _median([x[k] for x in lats]) for k in ("rate", "messages", "p50_ms", "p95_ms")}
    lat["p99_ms"] = fig.add("e_p99_ms", [x["p99_ms"] for x in lats])
    r["e_latency"] = lat
    # The budget uses the forward pass the worker runs (padding-free, base precision).
    budget = args.max_wait_ms + 2 * c[PACKED.name]["full_batch_ms"]
    r["e_budget_ms"] = budget
    d_auto = "d/auto"
    return {
        "d_over_c": fig.ratio(f"d/{PACKED.name}", f"c/{PADDED.name}"),
        "d_over_c_packed": fig.ratio(f"d/{PACKED.name}", f"c/{PACKED.name}"),
        "d_over_a": fig.ratio(f"d/{PACKED.name}", "a"),
        "d_best_over_a": fig.ratio(
            f"d/{best.name if r['d_worker_best'] > r['d_worker'] else PACKED.name}", "a"
        ),
        "d_auto_over_a": fig.ratio(d_auto, "a"),
        # D on auto against C of the variant that auto picked in this process.
        "d_over_c_auto": fig.ratio(d_auto, f"c/{r['auto']['c_name']}")
        if r["auto"]["c_name"] in c
        else None,
        # The variant auto ended up serving, pinned, against the best allowed one's D;
        # and auto's own run (its startup autotune and live trial included) against it.
        "d_served_over_best_allowed": fig.ratio(f"d/{served}", f"d/{best_d}")
        if served in r["d"]
        else None,
        "d_auto_over_best_allowed": fig.ratio(d_auto, f"d/{best_d}"),
        "overlap_gain": fig.ratio(f"d/{PACKED.name}", "d/padding-free, no overlap"),
        "f_over_bare": fig.ratio("f_worker_null", "f_bare"),
        "p99_over_budget": lat["p99_ms"] / budget if fig.stable("e_p99_ms") else None,
    }


def bucketing(args: Any) -> str:
    """C per ONNX variant that runs here, length-bucketed against one padded batch, side
    by side (medians of ``--repeats``), as a markdown table; for OpenVINO also bucketed
    on one stream over every core instead of a stream per core."""
    from worker.model.onnx_runtime import OnnxClassifier

    loaded = load_artifact(args.model)
    texts = [ex.text for ex in message_set(1000 if args.quick else 5000)[0]]
    repeats = args.repeats or (1 if args.quick else 3)
    lines = [
        f"C msg/s, {len(texts)} messages in batches of {args.batch_size}, "
        f"median of {repeats}; CPU {cpu()['model']}",
        "",
        "| variant | length-bucketed | one padded batch | bucketed / padded "
        "| bucketed, one stream (OpenVINO) |",
        "|---|---|---|---|---|",
    ]
    model_thread = model_executor()  # one thread for the model, as in the worker

    def c_of(clf: Any) -> float:
        model_thread.submit(clf.warmup, args.batch_size).result()
        runs = [
            model_thread.submit(bench_c, clf, texts, args.batch_size).result()
            for _ in range(repeats)
        ]
        return _median([x["msgs_per_s"] for x in runs])

    for v in RUNTIMES:
        name: variants.Variant = v.variant  # type: ignore[assignment]
        if variants.unavailable(name, loaded, "cpu") is not None:
            continue
        clf = model_thread.submit(v.classifier, args.model, "cpu", "float32").result()
        speed = {}
        for bucketed in (True, False):
            clf.bucketed = bucketed
            speed[bucketed] = c_of(clf)
        one_stream = "-"
        if name.startswith("ov-"):
            file = loaded.path / variants.RUNTIME_FILES[name]
            single = model_thread.submit(OnnxClassifier, loaded, file, name, None, True, 1)
            one_stream = f"{c_of(single.result()):,.0f}"
        lines.append(
            f"| {v.name} | {speed[True]:,.0f} | {speed[False]:,.0f} | "
            f"{speed[True] / speed[False]:.2f} | {one_stream} |"
        )
    return "\n".join(lines)


def shapes(args: Any, variant: variants.Variant) -> str:
    """C of ``variant`` on message sets of shapes it has not seen, then on one again.

    OpenVINO prepares its kernels once per input shape. Three fresh sets of 3,000
    messages, then the first set again, for padded widths as they come, rounded up to 4
    tokens (the worker's), and rounded with ``autotune.settle`` before.
    """
    loaded = load_artifact(args.model)
    sets = [[ex.text for ex in message_set(3000, seed=s)[0]] for s in (1, 2, 3)]
    model_thread = model_executor()
    seconds = 3.0  # settle's time with the default MODEL__AUTOTUNE_SECONDS
    lines = [
        f"{variant}: C msg/s on three fresh sets of 3,000 messages, then the first again; "
        f"CPU {cpu()['model']}",
        "",
        "| widths | settled first | fresh 1 | fresh 2 | fresh 3 | first set again |",
        "|---|---|---|---|---|---|",
    ]
    for multiple, settled in ((1, False), (4, False), (4, True)):
        clf: Any = model_thread.submit(variants.build, variant, loaded, "cpu").result()
        clf.width_multiple = multiple  # OpenVINO's and ONNX Runtime's runner
        model_thread.submit(clf.warmup, args.batch_size).result()
        if settled:
            model_thread.submit(
                autotune.settle, clf, variant, loaded, args.batch_size, seconds
            ).result()
        rates = [
            model_thread.submit(bench_c, clf, t, args.batch_size).result()["msgs_per_s"]
            for t in (*sets, sets[0])
        ]
        widths = "as they come" if multiple == 1 else f"rounded up to {multiple}"
        lines.append(
            f"| {widths} | {'yes, ' + str(seconds) + ' s' if settled else 'no'} | "
            + " | ".join(f"{r:,.0f}" for r in rates)
            + " |"
        )
        del clf
    return "\n".join(lines)
