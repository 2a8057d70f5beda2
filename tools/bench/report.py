"""The bench's report as markdown: one table of msg/s, accuracy per variant, E, the ratios."""

from __future__ import annotations

from typing import Any


def markdown(report: dict[str, Any]) -> str:
    r = report["results"]
    rows = [
        ("A notebook per-message", r.get("a_notebook_per_message")),
        ("B notebook batch", r.get("b_notebook_batch")),
    ]
    rows += [
        (
            f"C model only, {name} ({v['precision']}; full batch {v['full_batch_ms']:.0f} ms)",
            v["msgs_per_s"],
        )
        for name, v in r.get("c", {}).items()
    ]
    rows += [
        ("memory: worker pipeline, no Kafka", r.get("memory_pipeline")),
        ("memory: worker pipeline, no overlap", r.get("memory_pipeline_no_overlap")),
    ]
    rows += [
        (
            f"D worker end to end, {name} (mean batch {v['mean_batch']:.1f}, forward "
            f"{v['mean_inference_ms']:.0f} ms)",
            v["msgs_per_s"],
        )
        for name, v in r.get("d", {}).items()
    ]
    rows += [
        ("F worker, null model", r.get("f_worker_null_model")),
        ("F bare consume->produce loop", r.get("f_bare_loop")),
    ]
    lines = []
    cpu = report.get("machine", {}).get("cpu")
    if cpu:
        flags = ", ".join(f for f, on in cpu["flags"].items() if on) or "none of them"
        lines += [f"CPU: {cpu['model']}; flags: {flags}", ""]
    lines += ["| measurement | msg/s |", "|---|---|"]
    lines += [f"| {name} | {v:,.0f} |" for name, v in rows if v is not None]
    if "c" in r:
        lines += ["", "| variant | accuracy change per head (points) |", "|---|---|"]
        lines += [
            f"| {name} | "
            + ", ".join(f"{h} {100 * d:+.2f}" for h, d in v["accuracy_change"].items())
            + " |"
            for name, v in r["c"].items()
        ]
    if "auto" in r:
        a = r["auto"]
        timed = ", ".join(f"{k} {v:,.0f}" for k, v in a["autotune_msgs_per_s"].items())
        lines += ["", f"auto picks **{a['variant']}** (autotune, msg/s on full batches: {timed})"]
        lines += [f"- not timed: {k}: {v}" for k, v in a["skipped"].items()]
    va = report.get("variants_accuracy")
    if va:
        from trainer.variants import table  # the one the trainer prints

        lines += ["", table(va)]
    if "decode_us_per_msg" in r:
        lines += [
            "",
            f"decode (orjson + pydantic validation): {r['decode_us_per_msg']:.1f} µs per message",
        ]
    if "e_latency" in r:
        e = r["e_latency"]
        lines += [
            "",
            f"E latency at {e['rate']:.0f} msg/s: p50 {e['p50_ms']:.0f} ms, "
            f"p95 {e['p95_ms']:.0f} ms, p99 {e['p99_ms']:.0f} ms "
            f"(budget {r['e_budget_ms']:.0f} ms)",
        ]
    spread = report.get("spread")
    if spread:
        lines += ["", "| figure | median | runs | spread |", "|---|---|---|---|"]
        lines += [
            f"| {name} | {f['median']:,.1f} | "
            + ", ".join(f"{x:,.1f}" for x in f["runs"])
            + f" | {100 * f['spread']:.1f}%{' (unstable)' if name in spread['unstable'] else ''} |"
            for name, f in spread["figures"].items()
        ]
        if spread["unstable"]:
            lines += [
                "",
                f"unstable (spread over {100 * spread['stable_spread']:.0f}%, or one run), "
                "left out of the ratios: " + ", ".join(spread["unstable"]),
            ]
    lines += [
        "",
        "ratios: "
        + ", ".join(
            f"{k}={v:.2f}" if v is not None else f"{k}=n/a" for k, v in report["ratios"].items()
        ),
    ]
    return "\n".join(lines)
