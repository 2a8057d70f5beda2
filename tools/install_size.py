"""What an install downloads and unpacks, from pip's own report of it.

pip resolves without installing (``--dry-run``) and writes what it would install as JSON
(``--report``); this sums the wheels' sizes, compressed (the download) and unpacked (what
lands in site-packages, before ``.pyc`` files), and the part of it that is torch's CUDA
stack. Resolved offline from the wheelhouse, every wheel is a local file::

    .venv/bin/pip install --dry-run --ignore-installed --quiet --report /tmp/r.json \\
        --no-index --find-links ~/.cache/support-router/wheels -r requirements/worker.txt
    .venv/bin/python -m tools.install_size /tmp/r.json [--than OTHER.json] [--top N]

A URL that is not a local file is looked up by its file name in ``--wheelhouse``.
``--than`` lists the packages that OTHER.json installs and this one does not.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

WHEELHOUSE = Path.home() / ".cache" / "support-router" / "wheels"
# torch's Linux x86_64 wheel on PyPI depends on these (CUDA 13's libraries and triton);
# PyTorch's CPU index has a torch without them.
CUDA_STACK = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")
MB = 1_000_000


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    size: int  # bytes, compressed: the download
    unpacked: int  # bytes, the files in it

    @property
    def cuda(self) -> bool:
        return bool(CUDA_STACK.match(self.name))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheels(report: dict[str, Any], wheelhouse: Path) -> tuple[list[Wheel], list[str]]:
    """The report's wheels, and the names of what it installs that is no wheel file."""
    found, other = [], []
    items = report["install"]
    for item in items:
        meta = item["metadata"]
        name, version = canonical(meta["name"]), meta["version"]
        url = urlparse(item["download_info"]["url"])
        path = Path(unquote(url.path))
        if url.scheme != "file":
            path = wheelhouse / path.name
        if path.suffix != ".whl" or not path.is_file():
            other.append(f"{name} {version} ({item['download_info']['url']})")
            continue
        with zipfile.ZipFile(path) as whl:
            unpacked = sum(i.file_size for i in whl.infolist())
        found.append(Wheel(name, version, path.stat().st_size, unpacked))
    return sorted(found, key=lambda w: -w.size), other


def line(label: str, group: list[Wheel]) -> str:
    size, unpacked = sum(w.size for w in group), sum(w.unpacked for w in group)
    return f"{label:<26} {len(group):>4} {size / MB:>10.1f} {unpacked / MB:>12.1f}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.install_size", description=__doc__)
    parser.add_argument("report", type=Path, help="pip install --dry-run --report FILE")
    parser.add_argument("--than", type=Path, help="another report: what it adds to this one")
    parser.add_argument("--top", type=int, default=0, help="list the N largest wheels")
    parser.add_argument("--wheelhouse", type=Path, default=WHEELHOUSE)
    args = parser.parse_args(argv)
    found, other = wheels(json.loads(args.report.read_text()), args.wheelhouse)
    print(f"{'':<26} {'pkgs':>4} {'wheels MB':>10} {'unpacked MB':>12}")
    print(line("all", found))
    print(line("torch + CUDA stack", [w for w in found if w.cuda]))
    print(line("without torch + CUDA", [w for w in found if not w.cuda]))
    for w in found[: args.top]:
        print(f"  {w.name} {w.version}: {w.size / MB:.1f} MB, {w.unpacked / MB:.1f} MB unpacked")
    if args.than:
        theirs, _ = wheels(json.loads(args.than.read_text()), args.wheelhouse)
        ours = {w.name for w in found}
        extra = [w for w in theirs if w.name not in ours]
        print(line(f"only in {args.than.name}", extra))
        print("  " + ", ".join(f"{w.name} ({w.size / MB:.1f})" for w in extra))
    for item in other:
        print(f"not a wheel file, not counted: {item}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
