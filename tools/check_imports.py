"""The import rules between the rooms of the repository (run by ``make lint``).

Each rule names the modules it binds (a dotted prefix) and the modules they must not
import (prefixes), with exceptions. Imports
inside ``if TYPE_CHECKING:`` count too: a type-only edge still couples the rooms.
Usage: ``python -m tools.check_imports [ROOT]``; exit 1 and one line per broken rule.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("worker", "trainer", "schemas")


@dataclass(frozen=True)
class Rule:
    name: str
    binds: str | tuple[str, ...]
    forbids: tuple[str, ...]
    allows: tuple[str, ...] = ()  # exceptions to ``forbids``
    exempt: tuple[str, ...] = ()  # modules of ``binds`` the rule does not bind


RULES = (
    Rule("schemas are the contract: they import no code", "schemas", ("worker", "trainer")),
    Rule(
        "the worker never imports the trainer or the tools",
        "worker",
        ("trainer", "tools"),
    ),
    Rule(
        "the model library stands alone (the trainer and the bench load it too)",
        "worker.model",
        ("worker",),
        allows=("worker.model",),
    ),
    Rule(
        "the Kafka adapters know no model, no application and no process setup",
        "worker.kafka",
        ("worker.model", "worker.console", "worker.ops", "worker.runtime", "worker.pipeline"),
    ),
    Rule(
        "only the command line reaches the console and the ops tools",
        "worker",
        ("worker.console", "worker.ops"),
        exempt=("worker.console", "worker.ops", "worker.cli"),
    ),
    Rule(
        "the console is an application of its own: not the loop, not ops",
        "worker.console",
        ("worker.ops", "worker.pipeline", "worker.service", "worker.inference", "worker.model"),
    ),
    Rule(
        "ops tools do not run the loop",
        "worker.ops",
        ("worker.pipeline", "worker.service", "worker.inference", "worker.model"),
    ),
    Rule(
        "OpenTelemetry (the otel extra) is imported by worker.runtime.otel alone, which "
        "worker.tracing loads only when OTEL_* asks for traces",
        "worker",
        ("opentelemetry",),
        exempt=("worker.runtime.otel",),
    ),
    Rule(
        "the Python API and what it loads through run no loop: no Kafka, no process setup",
        ("worker.router", "worker.serving"),
        (
            "worker.service",
            "worker.pipeline",
            "worker.kafka",
            "worker.runtime",
            "worker.metrics",
            "worker.model_thread",
        ),
    ),
    Rule(
        "the trainer shares the model, the routing policy, the Python API, the Kafka "
        "adapters and the record codec with the worker, and nothing of its loop or "
        "applications",
        "trainer",
        ("worker",),
        allows=(
            "worker.model",
            "worker.routing",
            "worker.router",
            "worker.kafka",
            "worker.codec",
            "worker.outgoing",
            "worker.settings",
            "worker.errors",
        ),
    ),
    Rule(
        "experiment trackers stay behind trainer.tracking (the tracking extra)",
        "trainer",
        ("mlflow", "tensorboard", "torch.utils.tensorboard"),
        exempt=("trainer.tracking",),
    ),
)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                # ``from worker import codec`` imports worker.codec
                yield node.lineno, f"{node.module}.{alias.name}"


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def broken(rule: Rule, module: str, imported: str) -> bool:
    binds = (rule.binds,) if isinstance(rule.binds, str) else rule.binds
    if not any(under(module, b) for b in binds) or any(under(module, e) for e in rule.exempt):
        return False
    forbidden = any(under(imported, f) for f in rule.forbids)
    return forbidden and not any(under(imported, a) for a in rule.allows)


def check(root: Path) -> list[str]:
    problems = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(root, path)
            for line, imported in imports(ast.parse(path.read_text(), str(path))):
                for rule in RULES:
                    if broken(rule, module, imported):
                        where = f"{path.relative_to(root)}:{line}"
                        problems.append(f"{where}: {module} imports {imported}: {rule.name}")
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path.cwd()
    problems = check(root)
    for p in problems:
        print(p)
    print(f"import rules: {len(RULES)} rules, {len(problems)} broken", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
