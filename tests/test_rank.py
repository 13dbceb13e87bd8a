"""Ranking a benchmark with one proxy: correlations per field, held-out part, output formats."""

import csv
import io
import json

import numpy as np
import pytest
from conftest import bench
from scipy import stats

from gp_proxy.errors import AutoproxError
from vit_space.data.batches import BatchSpec
from vit_space.probe.cache import ProbeSpec, StatsCache
from vit_space.proxies.ranking import bench_fields, format_rankings, rank, top_ties, topk_accuracy
from vit_space.spaces import get_space

SPEC = ProbeSpec(BatchSpec("c100"))


@pytest.fixture
def pit12():
    return bench("pit").subset(np.arange(12))


def test_rank_equals_scipy_on_the_real_benchmark(pit12, tmp_path):
    fields = ["c100_kd_acc", "chaoyang_base_acc"]
    result = rank("params", pit12, fields, SPEC, StatsCache(tmp_path), holdout=0.5, split_seed=0, progress=False)
    space = get_space("pit")
    test = pit12.split(0.5, 0)[1]
    for field in fields:
        classes = 100 if field.startswith("c100") else 4
        params = np.array([space.num_params(a, classes) for a in pit12.archs], dtype=float)
        acc = pit12.accuracy(field)
        assert result.whole[field]["kendall"] == pytest.approx(stats.kendalltau(params, acc).statistic)
        assert result.heldout[field]["kendall"] == pytest.approx(stats.kendalltau(params[test], acc[test]).statistic)
        assert result.whole[field]["n"] == 12 and result.heldout[field]["n"] == len(test)
        assert result.whole[field]["top1_acc"] == acc[np.argmax(params)]
        assert result.whole[field]["top5_acc"] == pytest.approx(acc[np.argsort(-params)[:5]].mean())
        np.testing.assert_array_equal(result.scores[field], params)
    assert result.jcm == pytest.approx(np.mean([result.whole[f]["kendall"] for f in fields]))


def test_topk_ignores_architectures_without_a_score_or_accuracy():
    scores, acc = np.array([5.0, np.nan, 3.0, 9.0, 1.0]), np.array([70.0, 90.0, 60.0, np.nan, 50.0])
    assert topk_accuracy(scores, acc, np.arange(5)) == 70.0
    assert topk_accuracy(scores, acc, np.arange(5), k=2) == 65.0
    assert topk_accuracy(scores, acc, np.arange(5), k=5) == 60.0
    assert np.isnan(topk_accuracy(scores, acc, np.array([1, 3])))


def test_ties_for_first_are_averaged_not_taken_in_file_order():
    scores = np.array([2.0, 9.0, 9.0, 9.0, 1.0])
    acc = np.array([80.0, 60.0, 70.0, 90.0, 50.0])
    assert topk_accuracy(scores, acc, np.arange(5)) == pytest.approx((60 + 70 + 90) / 3)
    assert top_ties(scores, acc, np.arange(5)) == 3
    # top 4: the three tied at 9 fully, then 80; top 2: two places shared by the three tied
    assert topk_accuracy(scores, acc, np.arange(5), k=4) == 75.0
    assert topk_accuracy(scores, acc, np.arange(5), k=2) == pytest.approx((60 + 70 + 90) / 3)
    assert top_ties(scores, acc, np.array([0, 4])) == 1
    assert top_ties(scores, acc, np.array([], dtype=int)) == 0


def test_bench_fields_by_kind():
    af = bench("autoformer")
    assert bench_fields(af, [], "kd") == ["c100_kd_acc", "flower_kd_acc", "chaoyang_kd_acc"]
    assert "imagenet_super_acc" in bench_fields(af, [], "all")
    assert bench_fields(af, ["chaoyang"], "all") == ["chaoyang_base_acc", "chaoyang_kd_acc"]
    with pytest.raises(AutoproxError, match="has no field 'cifar_kd_acc'; it has: c100_base_acc"):
        bench_fields(af, ["cifar"], "kd")


def test_formats_carry_the_same_numbers(pit12, tmp_path):
    result = rank("params", pit12, ["c100_kd_acc"], SPEC, StatsCache(tmp_path), progress=False)
    payload = json.loads(format_rankings([result], "json"))
    assert payload["proxy"] == "params" and payload["bench"] == pit12.name
    assert set(payload["fields"]["c100_kd_acc"]) >= {"kendall", "spearman", "pearson", "n"}
    assert payload["jcm"] == pytest.approx(result.jcm)
    assert payload["heldout"]["jcm"] == pytest.approx(result.jcm_heldout)
    rows = list(csv.DictReader(io.StringIO(format_rankings([result], "csv"))))
    assert [(r["part"], r["field"]) for r in rows] == [
        ("all", "c100_kd_acc"),
        ("all", "JCM"),
        ("held-out", "c100_kd_acc"),
        ("held-out", "JCM"),
    ]
    assert float(rows[0]["kendall"]) == pytest.approx(result.whole["c100_kd_acc"]["kendall"])
    md = format_rankings([result], "md").splitlines()
    assert md[0].startswith("| proxy | bench |") and len(md) == 2 + len(rows)
    assert format_rankings([result]).splitlines()[0].split()[:4] == ["proxy", "bench", "part", "field"]
    assert isinstance(json.loads(format_rankings([result, result], "json")), list)


def test_nan_correlations_are_json_null(pit12, tmp_path):
    result = rank("params", pit12.subset(np.arange(4)), ["c100_kd_acc"], SPEC, StatsCache(tmp_path), progress=False)
    payload = json.loads(format_rankings([result], "json"))
    assert payload["heldout"]["fields"]["c100_kd_acc"]["kendall"] is None
