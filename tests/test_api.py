"""vit_space's public API, used only through `from vit_space import ...`; the README's script run as printed."""

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vit_space
from gp_proxy import load_proxy
from vit_space import (
    BatchSpec,
    Benchmark,
    Budget,
    BuildPlan,
    ImageData,
    ProbeSpec,
    Ranking,
    Recipe,
    Scores,
    ScoreTable,
    SearchConfig,
    Searcher,
    StatsCache,
    TrainResult,
    bench_fields,
    bench_tasks,
    build_bench,
    candidates,
    catalogue,
    count_params,
    disable_fused_attention,
    export_file,
    export_text,
    field_dataset,
    field_name,
    fill,
    format_rankings,
    get_dataset,
    get_space,
    latex_names,
    load_bench,
    load_images,
    make_batch,
    measure_macs,
    parse_range,
    probe_arch,
    proxy_scores,
    rank,
    read_archs,
    resolve_proxy,
    run_job,
    sample_within,
    saved_proxy_bundles,
    score_archs,
    search,
    tasks_for,
    train,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "api_example.py"
DIGITS = ProbeSpec(BatchSpec("digits", image_size=None))


def readme_block(heading: str) -> str:
    """The first ```python block after `heading` in the README."""
    text = (ROOT / "README.md").read_text()
    return text[text.index(heading) :].split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def api_run(tmp_path_factory):
    """The README's script, run once in a fresh interpreter; its folder (cache included) is reused."""
    out = tmp_path_factory.mktemp("api")
    env = {**os.environ, "AUTOPROX_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)], capture_output=True, text=True, env=env, cwd=out, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out, done.stdout


def test_every_public_name_is_exported_and_documented():
    for name in vit_space.__all__:
        obj = getattr(vit_space, name)
        if callable(obj) and name != "Arch":
            assert obj.__doc__ and len(obj.__doc__.split()) >= 4, name


def test_the_readme_script_is_the_file_and_runs_as_printed(api_run):
    assert readme_block("## Python API") == SCRIPT.read_text()
    out, stdout = api_run
    held_out = re.search(r": held-out Kendall tau (-?\d\.\d{3})", stdout)
    assert held_out and -1 <= float(held_out.group(1)) <= 1
    assert "LaTeX: " in stdout and (out / "proxy.tex").read_text().strip() in stdout
    best = json.loads((out / "search" / "best_arch.json").read_text())
    assert best["params"] <= 50e3 and re.search(r"best of 40 under 50k parameters: .* \(\d+ parameters\)", stdout)
    assert len((out / "search" / "evaluated.csv").read_text().splitlines()) == 41  # header + 40 architectures


def test_data_spaces_and_budgets():
    assert get_dataset("digits").num_classes == 10
    images, labels = make_batch(BatchSpec("digits", image_size=28))
    assert images.shape == (16, 1, 28, 28) and images.dtype == torch.float32 and labels.shape == (16,)
    data = load_images("digits")
    assert isinstance(data, ImageData) and (len(data.train_labels), len(data.test_labels)) == (1348, 449)
    assert parse_range("5-7.5") == (5e6, 7.5e6)
    space = get_space("af-tiny")
    budget = Budget(0, 50e3, num_classes=10)
    archs = sample_within(space, 5, random.Random(0), budget)
    assert len(archs) == 5 and all(space.num_params(a, 10) <= 50e3 for a in archs)
    model = space.build(archs[0], num_classes=10)
    assert count_params(model) == space.num_params(archs[0], 10)
    disable_fused_attention(model)  # FlopCounterMode counts attention's matmuls only when they are explicit
    assert all(not m.fused_attn for m in model.modules() if hasattr(m, "fused_attn"))
    assert measure_macs(model, 28, in_chans=1) == space.macs(archs[0], 10)


def test_read_archs_reads_a_search_and_a_list(api_run, tmp_path):
    space = get_space("af-tiny")
    best = read_archs(str(api_run[0] / "search" / "best_arch.json"), space)
    (tmp_path / "archs.json").write_text(json.dumps(best * 2))
    assert read_archs(str(tmp_path / "archs.json"), space) == best * 2


def test_benchmark_tasks_and_rankings(api_run):
    cache = StatsCache(api_run[0] / "cache")
    bench = load_bench("af-tiny")
    assert isinstance(bench, Benchmark) and len(bench) == 100
    assert field_name("digits", "base") == "digits_base_acc" and field_dataset("digits_base_acc") == "digits"
    fields = bench_fields(bench, [])
    assert fields == ["fmnist_base_acc", "digits_base_acc"]
    tasks = tasks_for(["af-tiny"], None, DIGITS, cache)
    again = bench_tasks(bench, ["fmnist", "digits"], DIGITS, cache)
    assert [t.name for t in tasks] == [t.name for t in again] == ["af-tiny/fmnist_base_acc", "af-tiny/digits_base_acc"]
    assert (len(tasks[0].train), len(tasks[0].test)) == (50, 50)
    ranking = rank("params", bench, fields, DIGITS, cache)
    assert isinstance(ranking, Ranking) and 0.3 < ranking.jcm < 0.7  # parameter count ranks af-tiny moderately
    assert "params" in format_rankings([ranking], "csv")
    space = get_space("af-tiny")
    scores = proxy_scores("params", space, bench.archs[:3], DIGITS, cache)
    assert isinstance(scores, Scores)
    assert np.array_equal(scores.values, [space.num_params(a, 10) for a in bench.archs[:3]])
    assert {"params", "snip", "synflow", "zico"} <= set(catalogue()) and resolve_proxy("snip") == "snip"


def test_probe_fill_and_saved_proxy_statistics(api_run, tmp_path):
    space, bench = get_space("af-tiny"), load_bench("af-tiny")
    stats = probe_arch(space, bench.archs[0], DIGITS)
    assert set(stats) == {"data"} and stats["data"].tensors["W"].shape[-2:] == (32, 32)
    cache = StatsCache(tmp_path)
    first, second = (fill(space, bench.archs[:3], [DIGITS], cache, progress=False) for _ in range(2))
    assert (first.computed, second.computed, second.cached) == (3, 0, 3)
    proxy = load_proxy(api_run[0] / "discover" / "proxies" / "rank01.json")
    bundles = saved_proxy_bundles(proxy, ["af-tiny"], StatsCache(api_run[0] / "cache"), progress=False)
    assert len(bundles) == 2 and all(len(b.ids) == 100 for b in bundles)
    assert latex_names(["gW", "sf.X"]) == {"gW": r"\nabla W", "sf.X": r"X^{\text{sf}}"}


def test_exports_and_score_tables(api_run, tmp_path):
    out = api_run[0]
    proxy = load_proxy(out / "discover" / "proxies" / "rank01.json")
    assert export_text(proxy, "latex") == (out / "proxy.tex").read_text().strip()
    assert "def proxy(" in export_file(proxy, "python", tmp_path / "proxy.py").read_text()
    space, budget = get_space("af-tiny"), Budget(0, 50e3, num_classes=10)
    archs = candidates(space, budget, sample=4, seed=1)
    table = score_archs(proxy, space, archs, DIGITS, StatsCache(out / "cache"), budget, progress=False)
    assert isinstance(table, ScoreTable) and [r.rank for r in table.rows] == [1, 2, 3, 4] and table.skipped == 0
    assert [r.score for r in table.rows] == sorted((r.score for r in table.rows), reverse=True)
    assert table.write_csv(tmp_path / "scores.csv").read_text().startswith("rank,score,params,macs,hash,arch\n")


def test_search_and_the_main_job(api_run, tmp_path):
    cache = StatsCache(api_run[0] / "cache")
    space = get_space("af-tiny")
    state = Searcher(
        space,
        ["params"],
        Budget(0, 20e3, num_classes=10),
        DIGITS,
        cache,
        SearchConfig(count=6, population=4, parents=2),
    ).run(tmp_path / "search", progress=False)
    assert len(state.evaluated) == 6 and all(c.params <= 20e3 for c in state.evaluated)
    job = run_job("af-tiny", tmp_path / "job", cache, iterations=10, search_budget=3, progress=False)
    assert job.stats.computed == 0 and job.stats.cached == 200  # the script's cache already held every entry
    assert [p.name for p in job.exports] == ["proxy.tex", "proxy.py", "proxy.graphml", "proxy.png"]
    assert len(job.search.evaluated) == 3 and (tmp_path / "job" / "search" / "best_arch.json").is_file()


def test_train_and_build_a_benchmark(tmp_path):
    space = get_space("af-tiny")
    arch = sample_within(space, 1, random.Random(3), Budget(0, 10e3, num_classes=10))[0]
    recipe = Recipe(steps=3, batch_size=8, test_size=64)
    result = train(space, arch, load_images("digits"), recipe, seed=0)
    assert isinstance(result, TrainResult) and 0 <= result.top1 <= 100
    out = build_bench(BuildPlan(space, (arch,), ("digits",), recipe, (0,)), tmp_path / "b.json", progress=False)
    bench = load_bench(out)
    assert len(bench) == 1 and bench.accuracy("digits_base_acc")[0] == pytest.approx(result.top1)


def test_an_ensemble_of_the_scripts_run_ranks_scores_and_searches(api_run, tmp_path, capsys):
    from gp_proxy import SavedEnsemble, mean_rank
    from vit_space.cli import main

    out = api_run[0]
    assert main(["ensemble", str(out / "discover"), "--top", "3", "--out", str(tmp_path / "e.json")]) == 0
    assert "mean rank of 3 proxies" in capsys.readouterr().out
    ensemble = resolve_proxy(str(tmp_path / "e.json"))
    assert isinstance(ensemble, SavedEnsemble) and len(ensemble.members) == 3
    cache, space, bench = StatsCache(out / "cache"), get_space("af-tiny"), load_bench("af-tiny")
    together = proxy_scores(ensemble, space, bench.archs[:6], DIGITS, cache).values
    apart = [proxy_scores(m, space, bench.archs[:6], DIGITS, cache).values for m in ensemble.members]
    assert np.array_equal(together, mean_rank(apart)) and together.min() >= 1 and together.max() <= 6
    ranking = rank(ensemble, bench, bench_fields(bench, []), DIGITS, cache)
    assert -1 <= ranking.jcm_heldout <= 1 and ranking.proxy.startswith("mean_rank(")
    config = SearchConfig(count=4, population=4, parents=2)
    state = search(space, [ensemble], Budget(0, 20e3, num_classes=10), DIGITS, cache, config, tmp_path / "s")
    assert all(len(c.scores) == 3 for c in state.evaluated)  # searched with its members, ranked over all so far
