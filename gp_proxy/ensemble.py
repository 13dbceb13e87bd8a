"""Ensembles of saved proxies: an architecture's score is its mean rank under the members.

{"format": "autoprox-ensemble", "version": 1, "members": [saved proxy, ...], "provenance": {...}}

Rank averaging makes members of different scales comparable, but a rank is relative to the
architectures scored together: an ensemble ranks a set (a benchmark, a sample), and a search
that scores candidates a batch at a time uses its members as several proxies instead (mean rank
over every candidate evaluated so far).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from gp_proxy import __version__
from gp_proxy.atomic import write_text
from gp_proxy.errors import AutoproxError
from gp_proxy.store import SavedProxy, json_safe, load_proxy, proxy_from_dict, read_json

ENSEMBLE_FORMAT, ENSEMBLE_VERSION = "autoprox-ensemble", 1


@dataclass
class SavedEnsemble:
    """Several saved proxies scored together by rank averaging (`mean_rank`)."""

    members: list[SavedProxy]
    provenance: dict = field(default_factory=dict)

    @property
    def expression(self) -> str:
        """How the ensemble reads: `mean_rank(e1; e2; ...)`."""
        return "mean_rank(" + "; ".join(m.expression for m in self.members) + ")"

    def to_json(self) -> str:
        payload = {
            "format": ENSEMBLE_FORMAT,
            "version": ENSEMBLE_VERSION,
            "members": [json.loads(m.to_json()) for m in self.members],
            "provenance": {"engine_version": __version__, **self.provenance},
        }
        return json.dumps(json_safe(payload), indent=2) + "\n"


def mean_rank(scores: Sequence[np.ndarray]) -> np.ndarray:
    """(A,) mean over members of each architecture's rank (1 = lowest score, ties averaged) among
    the A scored together; NaN where a member's score is not finite."""
    ranks = []
    for s in scores:
        s = np.asarray(s, dtype=np.float64)
        r = np.full(s.shape, np.nan)
        finite = np.isfinite(s)
        r[finite] = rankdata(s[finite])
        ranks.append(r)
    return np.mean(ranks, axis=0)


def ensemble_of_run(run_dir: str | Path, top: int = 5) -> SavedEnsemble:
    """The first `top` saved proxies of a `discover` run (`proxies/rank01.json` ...), in its order."""
    paths = sorted((Path(run_dir) / "proxies").glob("rank*.json"))[:top]
    if top < 2 or len(paths) < top:
        raise AutoproxError(f"{run_dir}: an ensemble needs 2 or more proxies; asked for {top}, found {len(paths)}")
    return SavedEnsemble([load_proxy(p) for p in paths], {"run": str(run_dir), "top": top})


def save_ensemble(path: str | Path, ensemble: SavedEnsemble) -> Path:
    """Write the ensemble atomically (folders created); returns the path."""
    write_text(path, ensemble.to_json())
    return Path(path)


def load_ensemble(path: str | Path) -> SavedEnsemble:
    """Read and check a saved ensemble and each of its members; AutoproxError naming the file."""
    payload = read_json(path, "ensemble")
    if not isinstance(payload, dict) or payload.get("format") != ENSEMBLE_FORMAT:
        raise AutoproxError(f'{path}: not an autoprox ensemble file (no "format": "{ENSEMBLE_FORMAT}")')
    if payload.get("version") != ENSEMBLE_VERSION:
        raise AutoproxError(f"{path}: unsupported ensemble version {payload.get('version')!r}")
    members = payload.get("members")
    if not isinstance(members, list) or len(members) < 2:
        raise AutoproxError(f'{path}: "members" must list 2 or more saved proxies')
    provenance = payload.get("provenance", {})
    if not isinstance(provenance, dict):
        raise AutoproxError(f'{path}: "provenance" must be an object')
    return SavedEnsemble([proxy_from_dict(m, f"{path} member {i}") for i, m in enumerate(members)], provenance)
