"""Write the JSON Schema files of the wire contracts: ``python -m schemas.generate``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.artifact import Manifest
from schemas.learning import Feedback, ReviewItem, ShadowResult
from schemas.messages import InboundMessage, OutboundMessage

OUT_DIR = Path(__file__).resolve().parent / "jsonschema"
MODELS: dict[str, type[BaseModel]] = {
    "inbound.json": InboundMessage,
    "outbound.json": OutboundMessage,
    "artifact-manifest.json": Manifest,
    "feedback.json": Feedback,
    "review.json": ReviewItem,
    "shadow.json": ShadowResult,
}


def render(model: type[BaseModel]) -> str:
    return json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    OUT_DIR.mkdir(exist_ok=True)
    for name, model in MODELS.items():
        (OUT_DIR / name).write_text(render(model))
        print(f"wrote {OUT_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
