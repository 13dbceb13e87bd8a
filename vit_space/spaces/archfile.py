"""Architecture files: the JSON a user, a benchmark or a search writes, read back as a space's architectures."""

from __future__ import annotations

import json
from pathlib import Path

from gp_proxy.errors import AutoproxError
from vit_space.spaces.base import Arch, Space


def read_archs(path: str, space: Space) -> list[Arch]:
    """A JSON list of architectures, a benchmark's {"records": [{"arch": ...}]} or a search's
    {"arch": ...}, validated against `space`."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise AutoproxError(f"cannot read {path}: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise AutoproxError(f"{path}: malformed JSON ({e.msg} at line {e.lineno})") from e
    if isinstance(payload, dict) and isinstance(payload.get("records"), list):
        payload = [r.get("arch") if isinstance(r, dict) else r for r in payload["records"]]
    elif isinstance(payload, dict) and isinstance(payload.get("arch"), dict):  # a search's best_arch.json
        payload = [payload["arch"]]
    if not isinstance(payload, list) or not payload:
        raise AutoproxError(f"{path}: expected a non-empty JSON list of architectures")
    archs = []
    for i, arch in enumerate(payload):
        try:
            archs.append(space.validate(arch))
        except AutoproxError as e:
            raise AutoproxError(f"{path}: architecture {i}: {e}") from e
    return archs
