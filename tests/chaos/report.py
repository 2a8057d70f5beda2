"""Accounting (in, out, missing, duplicated, wrong place, recovery) and the reports."""

from __future__ import annotations

import itertools
import json
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.messages import ROUTES
from tests.chaos.observe import Fault, Out
from worker.routing import RoutingPolicy

EXAMPLES = 8  # ids listed per kind of failure


@dataclass
class Sent:
    """One input record: what it is, where it must end, and where Kafka put it."""

    cid: str  # unique per scenario; the message_id for messages that have one
    kind: str  # good | bad | fail | slow | fuzz | poison:<name> | canary
    expect: frozenset[str]  # "route" (any route) and/or "dlq:<stage>" / a route name
    message_id: str | None = None
    partition: int = -1
    offset: int = -1
    error: str | None = None  # delivery failed: not in the log (or unknown)
    note: str = ""


class Inputs:
    """Every record a scenario produced, filled in by delivery reports."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self._lock = threading.Lock()

    def add(self, sent: Sent) -> Sent:
        with self._lock:
            self.sent.append(sent)
        return sent

    def delivered(self) -> list[Sent]:
        with self._lock:
            return [s for s in self.sent if s.partition >= 0 and s.error is None]

    def undelivered(self) -> list[Sent]:
        with self._lock:
            return [s for s in self.sent if s.partition < 0 or s.error is not None]


@dataclass
class Accounting:
    total_in: int
    total_out: int
    missing: list[Sent]
    duplicated: list[tuple[Sent, int]]
    wrong_place: list[tuple[Sent, str]]
    unmatched: list[Out]  # outputs that name no input we produced
    hits: dict[str, list[Out]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "in": self.total_in,
            "out": self.total_out,
            "missing": len(self.missing),
            "duplicated": len(self.duplicated),
            "wrong_place": len(self.wrong_place),
            "unmatched_out": len(self.unmatched),
        }

    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.wrong_place or self.unmatched)

    def examples(self) -> dict[str, list[str]]:
        return {
            "missing": [
                f"{s.cid} ({s.kind}) in[{s.partition}]@{s.offset}" for s in self.missing[:EXAMPLES]
            ],
            "duplicated": [
                f"{s.cid} x{n} in[{s.partition}]@{s.offset}" for s, n in self.duplicated[:EXAMPLES]
            ],
            "wrong_place": [f"{s.cid} ({s.kind}): {why}" for s, why in self.wrong_place[:EXAMPLES]],
            "unmatched_out": [
                f"{o.topic}[{o.partition}]@{o.offset} {o.place} {o.detail}"[:300]
                for o in self.unmatched[:EXAMPLES]
            ],
        }


def offset_unknown(s: Sent) -> bool:
    return s.offset is None or s.offset < 0


def account(inputs: Inputs, outs: list[Out], policy: RoutingPolicy | None) -> Accounting:
    """Match outputs to inputs by the inbound (partition, offset) each output names."""
    delivered = inputs.delivered()
    by_pos = {(s.partition, s.offset): s for s in delivered}
    hits: dict[str, list[Out]] = defaultdict(list)
    unmatched: list[Out] = []
    for out in outs:
        sent = by_pos.get(out.source) if out.source is not None else None
        if sent is None:
            unmatched.append(out)
        else:
            hits[sent.cid].append(out)
    # A delivery report without an offset: an idempotent retry the broker answered as a
    # duplicate of a batch it had already written (seen after a whole-cluster SIGKILL).
    # The record is in the log once; its output is found by message id instead.
    for s in delivered:
        if offset_unknown(s) and s.message_id is not None:
            found = [o for o in unmatched if o.message_id == s.message_id]
            hits[s.cid].extend(found)
            unmatched = [o for o in unmatched if o.message_id != s.message_id]
    missing = [s for s in delivered if not hits.get(s.cid)]
    duplicated = [(s, len(hits[s.cid])) for s in delivered if len(hits.get(s.cid, [])) > 1]
    wrong: list[tuple[Sent, str]] = []
    for s in delivered:
        for out in hits.get(s.cid, [])[:1]:
            why = misplaced(s, out, policy)
            if why:
                wrong.append((s, why))
    return Accounting(len(delivered), len(outs), missing, duplicated, wrong, unmatched, dict(hits))


def misplaced(s: Sent, out: Out, policy: RoutingPolicy | None) -> str:
    """Why this output is in the wrong place for its input ("" when it is right)."""
    if out.place in ROUTES:
        if "route" not in s.expect and out.place not in s.expect:
            return f"routed to {out.place}, expected {sorted(s.expect)}"
        if s.message_id is not None and out.message_id != s.message_id:
            return f"result says message_id {out.message_id!r}, sent {s.message_id!r}"
        if "topic_mismatch" in out.detail:
            return str(out.detail["topic_mismatch"])
        return _route_check(out, policy)
    if out.place not in s.expect:
        return f"{out.place} ({out.detail.get('error_type', '')}), expected {sorted(s.expect)}"
    return ""


def _route_check(out: Out, policy: RoutingPolicy | None) -> str:
    """The route must follow from the result's own predictions under the artifact's policy."""
    preds = out.detail.get("predictions")
    reason = out.detail.get("routing")
    if policy is None or preds is None:
        if reason == "empty_text" and out.place != "escalate":
            return f"empty text routed to {out.place}"
        return ""
    try:
        decision = policy.decide(
            {h: p[0] for h, p in preds.items()},
            {h: p[1] for h, p in preds.items()},
            out.detail.get("unfamiliarity"),
        )
    except Exception as exc:
        return f"predictions the policy cannot read: {exc!r}"[:200]
    if (decision.route, decision.reason) != (out.place, reason):
        return (
            f"routed {out.place}/{reason}, its predictions say {decision.route}/{decision.reason}"
        )
    return ""


def recovery(faults: list[Fault], outs: list[Out]) -> dict[str, Any]:
    """Per fault: time to the next committed output, and to the next one of every partition.

    "next output" is the longest time from a fault (kill, broker stop, freeze end...) to
    any committed output after it. "partition stall" is the longest, over inbound
    partitions that had output after the fault, of the time to that partition's next
    output: a killed replica's partitions show there even while others keep routing.
    """
    arrivals = sorted(o.arrived for o in outs)
    by_partition: dict[int, list[float]] = defaultdict(list)
    for o in outs:
        if o.source is not None:
            by_partition[o.source[0]].append(o.arrived)
    for times in by_partition.values():
        times.sort()
    per_fault = []
    for f in faults:
        if not f.recovery:
            continue
        nxt = next((t for t in arrivals if t > f.at), None)
        stalls = [
            next(t for t in times if t > f.at) - f.at
            for times in by_partition.values()
            if times and times[-1] > f.at
        ]
        per_fault.append(
            {
                "kind": f.kind,
                "detail": f.detail,
                "next_output_s": None if nxt is None else round(nxt - f.at, 2),
                "partition_stall_s": round(max(stalls), 2) if stalls else None,
            }
        )
    nexts = [p["next_output_s"] for p in per_fault if p["next_output_s"] is not None]
    stalls_all = [p["partition_stall_s"] for p in per_fault if p["partition_stall_s"] is not None]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    never = sum(p["next_output_s"] is None for p in per_fault)
    return {
        "faults": len(per_fault),
        # None when some fault was never followed by an output: recovery did not happen.
        "longest_s": max(nexts) if nexts and not never else None,
        "never_followed_by_output": never,
        "longest_partition_stall_s": max(stalls_all) if stalls_all else None,
        "longest_output_gap_s": round(max(gaps), 2) if gaps else None,
        "per_fault": per_fault,
    }


# -- reports ------------------------------------------------------------------------------


def write_reports(results: list[dict[str, Any]], out_dir: Path, meta: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {**meta, "passed": all(r["passed"] for r in results), "scenarios": results}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = out_dir / "report.md"
    md.write_text(markdown(report))
    return md


def _rss(r: dict[str, Any]) -> str:
    peaks = r.get("peak_rss_mib") or {}
    return ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()) or "-"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Chaos run {report.get('run_id', '')}",
        "",
        f"{report.get('mode', '')} run, seed {report.get('seed')}, broker {report.get('broker')}, "
        f"{report.get('seconds', 0):.0f} s; **{'PASS' if report['passed'] else 'FAIL'}**.",
        "",
        "| scenario | result | in | out | missing | duplicated | wrong place | faults | "
        "longest recovery (s) | partition stall (s) | peak RSS per worker (MiB) | time (s) |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|",
    ]
    for r in report["scenarios"]:
        c = r.get("counts", {})
        rec = r.get("recovery", {})
        lines.append(
            f"| {r['scenario']} | {'pass' if r['passed'] else '**FAIL**'} | {c.get('in', '-')} | "
            f"{c.get('out', '-')} | {c.get('missing', '-')} | {c.get('duplicated', '-')} | "
            f"{c.get('wrong_place', '-')} | {r.get('fault_summary', '-')} | "
            f"{_recovery(rec)} | {_num(rec.get('longest_partition_stall_s'))} | "
            f"{_rss(r)} | {r.get('seconds', 0):.0f} |"
        )
    for r in report["scenarios"]:
        lines += ["", f"## {r['scenario']}", "", r.get("about", ""), ""]
        if r.get("error"):
            lines += [f"**error:** `{r['error']}`", ""]
        for check in r.get("checks", []):
            mark = "ok" if check["ok"] else "**FAILED**"
            if not check.get("required", True):
                mark = "info, " + ("yes" if check["ok"] else "no")
            lines.append(
                f"- {mark}: {check['name']}"
                + (f" ({check['detail']})" if check.get("detail") else "")
            )
        for kind, ids in (r.get("examples") or {}).items():
            if ids:
                lines.append(f"- {kind}, e.g.: " + "; ".join(f"`{i}`" for i in ids[:5]))
        for name, stack in (r.get("stacks") or {}).items():
            lines += ["", f"stacks of {name}:", "", "```", stack[-3000:], "```"]
        deaths = (r.get("workers") or {}).get("deaths") or []
        for d in deaths[:3]:
            lines += [
                "",
                f"worker {d['replica']} pid {d['pid']} died, exit {d['exit_code']}; "
                f"log tail ({d['log']}):",
                "",
                "```",
                d["tail"][-3000:],
                "```",
            ]
    return "\n".join(lines) + "\n"


def _recovery(rec: dict[str, Any]) -> str:
    if rec.get("never_followed_by_output"):
        return f"never ({rec['never_followed_by_output']} fault(s) without a later output)"
    return _num(rec.get("longest_s"))


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.1f}"
