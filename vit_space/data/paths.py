"""Where autoprox keeps its user cache, and checksummed downloads into it."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from gp_proxy.atomic import atomic_path
from gp_proxy.errors import AutoproxError

_CHUNK = 1 << 16


def cache_root() -> Path:
    """``$AUTOPROX_CACHE``, else ``$XDG_CACHE_HOME/autoprox``, else ``~/.cache/autoprox``."""
    if os.environ.get("AUTOPROX_CACHE"):
        return Path(os.environ["AUTOPROX_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "autoprox"


def download(url: str, target: Path, expected: str) -> None:
    """Stream ``url`` (https:// or file://) to a temp file beside ``target``; move it into place
    only if its sha256 is ``expected``, so a failed download leaves nothing behind."""
    with atomic_path(target) as tmp:
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        except (OSError, ValueError) as e:
            raise AutoproxError(f"cannot download {url}: {e}") from e
        if digest.hexdigest() != expected:
            raise AutoproxError(
                f"{url}: sha256 {digest.hexdigest()} does not match the expected {expected}; nothing was saved"
            )


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
