"""Saved proxies: one versioned JSON file per proxy, loaded by parsing, never by evaluating.

{"format": "autoprox-proxy", "version": 1,
 "expression": "agg_sum_all(l1(mul(W, gW)))",
 "statistics": {"names": [...], "groups": [...], "probe": {how they were measured}},
 "fitness": {"jcm_mode": ..., "jcm_train": ..., "jcm_test": ..., "train": {task: {...}}, "test": {...}},
 "provenance": {"engine_version": ..., "date": ..., ...},
 "simplification": {"original": ..., "exact": [...], "rank": [...], "rtol": ...}}  (optional)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from deap import gp

from gp_proxy import __version__
from gp_proxy.atomic import write_text
from gp_proxy.errors import AutoproxError
from gp_proxy.primitives import build_pset
from gp_proxy.program import parse

FORMAT, VERSION = "autoprox-proxy", 1


@dataclass
class SavedProxy:
    """A proxy as saved in a JSON file (see the module docstring for the layout).

    expression:     the program, a prefix expression, e.g. "agg_sum_all(l1(mul(W, gW)))".
    names, groups:  the statistic names and unit groups its primitive set was built on.
    probe:          how the statistics were measured (free-form, e.g. batch size, sketch size).
    fitness:        "jcm_mode", "jcm_train", "jcm_test" (JCMs of Kendall tau, in [-1, 1]; None when
                    invalid), and per task "train"/"test": {"kendall", "spearman", "pearson", "n"}.
    provenance:     where it came from (seed, algorithm, date, evaluations, rank, size in nodes ...).
    simplification: the program as found and the rewrites that shortened it, if any.
    """

    expression: str
    names: list[str]
    groups: list[str]
    probe: dict = field(default_factory=dict)
    fitness: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    simplification: dict = field(default_factory=dict)

    def tree(self) -> gp.PrimitiveTree:
        """The expression parsed against the primitive set of its statistics and groups."""
        return parse(self.expression, build_pset(self.names, self.groups))

    def to_json(self) -> str:
        payload = {
            "format": FORMAT,
            "version": VERSION,
            "expression": self.expression,
            "statistics": {"names": self.names, "groups": self.groups, "probe": self.probe},
            "fitness": self.fitness,
            "provenance": {"engine_version": __version__, **self.provenance},
        }
        if self.simplification:
            payload["simplification"] = self.simplification
        return json.dumps(json_safe(payload), indent=2) + "\n"


def json_safe(value):
    """`value` with every non-finite float (JSON has no NaN or inf) replaced by None (null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def save_proxy(path: str | Path, proxy: SavedProxy) -> Path:
    """Check that the expression parses, then write the file atomically (folders created);
    returns the path. Non-finite numbers are saved as null."""
    proxy.tree()
    write_text(path, proxy.to_json())
    return Path(path)


def load_proxy(path: str | Path) -> SavedProxy:
    """Read and check a saved proxy: format, version, fields, and the expression against its
    statistics; AutoproxError, naming the file, on any problem."""
    return proxy_from_dict(read_json(path, "proxy"), str(path))


def read_json(path: str | Path, what: str) -> object:
    """The JSON content of a file; AutoproxError naming the file when it cannot be read or parsed."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise AutoproxError(f"cannot read {what} file {path}: {e.strerror}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AutoproxError(f"{path}: not a JSON {what} file ({e})") from e


def proxy_from_dict(payload: object, source: str) -> SavedProxy:
    """The saved proxy `to_json` wrote, checked as `load_proxy` checks a file (`source` names it)."""
    path = source
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise AutoproxError(f'{path}: not an autoprox proxy file (no "format": "{FORMAT}")')
    if payload.get("version") != VERSION:
        raise AutoproxError(
            f"{path}: unsupported proxy file version {payload.get('version')!r}; this autoprox reads {VERSION}"
        )
    stats = payload.get("statistics")
    if not isinstance(payload.get("expression"), str) or not isinstance(stats, dict):
        raise AutoproxError(f'{path}: needs a string "expression" and a "statistics" object')
    names, groups = stats.get("names"), stats.get("groups")
    if not (isinstance(names, list) and isinstance(groups, list)):
        raise AutoproxError(f'{path}: "statistics" needs lists "names" and "groups"')
    extras = {k: payload.get(k, {}) for k in ("fitness", "provenance", "simplification")}
    extras["probe"] = stats.get("probe", {})
    for key, value in extras.items():
        if not isinstance(value, dict):
            raise AutoproxError(f'{path}: "{key}" must be an object')
    proxy = SavedProxy(payload["expression"], names, groups, **extras)
    try:
        proxy.tree()
    except AutoproxError as e:
        raise AutoproxError(f"{path}: {e}") from e
    return proxy
