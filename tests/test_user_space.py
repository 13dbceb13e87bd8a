"""A user's own space by `package.module:ClassName`: the example DeiT-III space, probed, scored and searched."""

import json
import random
import sys
import textwrap
from pathlib import Path

import pytest

from gp_proxy.errors import AutoproxError
from vit_space.cli import main
from vit_space.data.batches import BatchSpec
from vit_space.probe.cache import ProbeSpec, StatsCache
from vit_space.search.budget import Budget
from vit_space.search.scoring import score_archs
from vit_space.search.searchers import SearchConfig, search
from vit_space.spaces import UserSpace, get_space

EXPERIMENTS = str(Path(__file__).resolve().parents[1] / "experiments")
SPEC = ProbeSpec(BatchSpec("c100", "skimage", 4, 0, 32))  # 32 px: 4 tokens, a quick probe


@pytest.fixture
def deit3(monkeypatch):
    monkeypatch.syspath_prepend(EXPERIMENTS)
    return get_space("deit3_space:DeiT3Space")


def test_a_user_space_is_probed_scored_and_searched(deit3, tmp_path):
    assert isinstance(deit3, UserSpace) and deit3.name == "deit3_space:DeiT3Space"
    archs = [deit3.sample(random.Random(s)) for s in range(4)]
    assert len({deit3.arch_hash(a) for a in archs}) == 4
    table = score_archs("snip", deit3, archs, SPEC, StatsCache(tmp_path / "cache"), Budget(), progress=False)
    assert len(table.rows) == 4 and [r.rank for r in table.rows] == [1, 2, 3, 4]
    assert table.rows[0].params == deit3.num_params(deit3.validate(json.loads(table.rows[0].arch)), 1000, 224)
    state = search(
        deit3, ["snip"], Budget(), SPEC, StatsCache(tmp_path / "cache"), SearchConfig(count=6, population=3, parents=2),
        tmp_path / "search", progress=False,
    )  # fmt: skip
    assert len(state.evaluated) == 6 and (tmp_path / "search" / "best_arch.json").is_file()


def test_bad_user_spaces_are_one_line_naming_what_is_wrong(monkeypatch, tmp_path, capsys):
    (tmp_path / "half_space.py").write_text(textwrap.dedent("""
        class HalfSpace:
            def sample(self, rng): return {}
            def validate(self, arch): return arch
    """))  # fmt: skip
    (tmp_path / "broken_space.py").write_text("raise RuntimeError('no GPU here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AutoproxError, match=r"class HalfSpace lacks mutate, crossover, build, num_params, macs of"):
        get_space("half_space:HalfSpace")
    with pytest.raises(AutoproxError, match=r"module 'broken_space' does not import \(RuntimeError: no GPU here\)"):
        get_space("broken_space:Any")
    with pytest.raises(AutoproxError, match=r"module 'half_space' has no class 'Whole'"):
        get_space("half_space:Whole")
    code = main(["score", "snip", "--space", "no_such_module:Space", "--sample", "2"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "does not import" in err
    assert "no_such_module" not in sys.modules
