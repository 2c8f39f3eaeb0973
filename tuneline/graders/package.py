"""Build the RFT grader Lambda's deployment zip: Tuneline's code, the graders it runs, dependencies.

    python -m tuneline.graders.package --graders graders.json --out build/rft_grader.zip \\
        [--deps build/deps]

``graders.json`` is a JSON list of ``GraderConfig`` (as in ``tune.grader.tuneline``); it is
validated here, so a typo fails before anything is deployed, and bundled as
``tuneline/graders/graders.json``, which the handler reads. ``--deps`` is a folder made by
``pip install --target`` for the Lambda's platform (pydantic and jsonschema; the LLM judge also
needs pydantic-settings and PyYAML; boto3 is in the Lambda runtime); its contents go to the zip's
root. ``infra/terraform/aws/rft_grader.tf`` deploys the zip (``var.rft_grader_package``).
"""

from __future__ import annotations

import argparse
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneline.graders.registry import build_graders

__all__ = ["HANDLER", "build_package"]

HANDLER = "tuneline.graders.rft_lambda.lambda_handler"
_TUNELINE = Path(__file__).resolve().parents[1]
# A fixed timestamp: the same code and graders give the same zip, so Terraform redeploys only on change.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def build_package(out: Path, graders: Sequence[dict[str, Any]], deps: Path | None = None) -> Path:
    """Write the zip; returns its path."""
    build_graders(graders)  # refuses unknown graders and bad options
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(_TUNELINE.rglob("*.py")):
            _add(archive, "tuneline/" + path.relative_to(_TUNELINE).as_posix(), path.read_bytes())
        _add(archive, "tuneline/graders/graders.json", json.dumps(list(graders), indent=2).encode())
        if deps is not None:
            for path in sorted(p for p in deps.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
                _add(archive, path.relative_to(deps).as_posix(), path.read_bytes())
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the Tuneline RFT grader Lambda zip.")
    parser.add_argument("--graders", type=Path, required=True, help="JSON list of grader configs")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--deps", type=Path, default=None, help="pip --target folder for the Lambda platform")
    args = parser.parse_args(argv)
    print(build_package(args.out, json.loads(args.graders.read_text()), args.deps))


if __name__ == "__main__":
    main()
