"""The public API at the package root: every exported name at work on the planted tasks, reached
only through `from gp_proxy import ...`."""

import ast
import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic import planted_tasks

from gp_proxy import (
    KNOWN_PROXIES,
    AutoproxError,
    DiscoveryConfig,
    DiscoveryResult,
    Evaluator,
    FrontRow,
    Objective,
    Report,
    SavedProxy,
    Task,
    __version__,
    best_of_runs,
    build_pset,
    correlations,
    discover,
    front_proxy,
    jcm,
    kendall,
    known_proxy,
    load_proxy,
    parse,
    read_front,
    report,
    resolve_device,
    save_proxy,
    simplify,
    table,
    to_graph,
    to_latex,
    to_python,
    to_sympy,
    write_report,
    write_text,
)

PLANTED = "agg_sum_mlp(fro(gW))"  # what the synthetic accuracies follow (plus noise)
FAST = {"population": 20, "hall_of_fame": 5, "checkpoint_every": 50}


def program(expression: str, task: Task):
    """The tree of `expression` over the task's statistics and groups."""
    return SavedProxy(expression, task.bundle.names, sorted(task.bundle.groups)).tree()


@pytest.fixture(scope="module")
def tasks() -> list[Task]:
    return planted_tasks()


@pytest.fixture(scope="module")
def runs(tasks, tmp_path_factory) -> tuple[DiscoveryResult, Path, Path]:
    """An elitism run that finds the planted signal and a short (mu + lambda) one."""
    root = tmp_path_factory.mktemp("runs")
    found = discover(tasks, DiscoveryConfig(iterations=120, seed=1, **FAST), root / "elitism", progress=False)
    discover(
        tasks,
        DiscoveryConfig(algorithm="mu+lambda", iterations=1, lambda_=10, seed=2, **FAST),
        root / "mu+lambda",
        progress=False,
    )
    return found, root / "elitism", root / "mu+lambda"


def test_discover_finds_the_planted_signal(tasks, runs):
    result, run_dir, _ = runs
    assert isinstance(result, DiscoveryResult) and len(result.halloffame) == 5 and result.seconds > 0
    assert result.evaluations == result.logbook[-1]["evals"] > 120 and result.logbook[-1]["iteration"] == 120
    best = load_proxy(result.saved[0])
    assert result.saved[0] == run_dir / "proxies" / "rank01.json"
    assert best.fitness["jcm_train"] > 0.7 and best.fitness["jcm_test"] > 0.6
    planted = Objective(tasks)(program(PLANTED, tasks[0]))[0]
    assert best.fitness["jcm_train"] >= planted - 0.05 and planted > 0.7
    assert best.provenance["engine_version"] == __version__ and best.provenance["algorithm"] == "elitism"


def test_objective_is_the_jcm_of_kendall_taus_on_the_training_architectures(tasks):
    tree = program(PLANTED, tasks[0])
    taus = []
    for task in tasks:
        scores = Evaluator(task.bundle)(tree)
        assert scores.shape == (task.bundle.num_archs,) and scores.dtype == np.float64
        taus.append(kendall(scores[task.train], task.accuracy[task.train]))
    assert Objective(tasks)(tree) == (round(jcm(taus), 3), len(tree)) == (round(float(np.mean(taus)), 3), 3)
    assert jcm(taus, "min") == min(taus) and np.isnan(jcm([]))
    assert Objective(tasks)(program("agg_mean_all(mean(sign(square(gW))))", tasks[0]))[0] == float("-inf")  # constant
    assert Objective(tasks, "min").report(tree).jcm_train == pytest.approx(min(taus))


def test_save_and_load_round_trip(runs, tmp_path):
    proxy = load_proxy(runs[0].saved[0])
    copy = save_proxy(tmp_path / "nested" / "copy.json", proxy)
    assert load_proxy(copy) == proxy and str(proxy.tree()) == proxy.expression
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(AutoproxError, match="not an autoprox proxy file"):
        load_proxy(tmp_path / "bad.json")


def test_exported_python_scores_like_the_evaluator(tasks, runs, tmp_path):
    bundle = tasks[0].bundle
    for expression in (load_proxy(runs[0].saved[0]).expression, known_proxy("snip").expression):
        tree = program(expression, tasks[0])
        path = tmp_path / f"exported_{len(list(tmp_path.iterdir()))}.py"
        path.write_text(to_python(tree, sorted(bundle.groups), {"sketch_size": bundle.sketch_size}))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = sys.modules[path.stem] = importlib.util.module_from_spec(spec)  # its dataclasses look it up
        spec.loader.exec_module(module)
        scores = module.proxy(bundle.tensors, bundle.numel, bundle.groups, bundle.mask)
        np.testing.assert_array_equal(scores.numpy(), Evaluator(bundle, memo_bytes=0)(tree))


def test_formula_and_graph_exports(tasks):
    tree = program(PLANTED, tasks[0])
    assert {s.name for s in to_sympy(tree).free_symbols} == {"gW"}
    latex = to_latex(tree, {"gW": r"\nabla W"})
    assert r"\nabla W" in latex and r"\lVert" in latex and "mlp" in latex
    graph = to_graph(program("agg_sum_all(fro(mul(gW, gW)))", tasks[0]))
    assert graph.graph["expression"] == "agg_sum_all(fro(mul(gW, gW)))"
    assert graph.number_of_nodes() == 4 and graph.number_of_edges() == 4  # gW once, used twice by mul
    assert {d["kind"] for _, d in graph.nodes(data=True)} == {"statistic", "primitive"}


def test_simplify_drops_what_cannot_change_the_scores(tasks):
    evaluators = [Evaluator(tasks[0].bundle)]
    simple = simplify(program("agg_sum_mlp(fro(abs(gW)))", tasks[0]), evaluators)
    assert simple.expression == PLANTED and simple.original == "agg_sum_mlp(fro(abs(gW)))"
    assert simple.exact == ["abs(gW) -> gW"]
    assert simplify(program(PLANTED, tasks[0]), evaluators).expression == PLANTED


def test_known_proxies_and_user_errors(tasks):
    grad_norm = known_proxy("grad_norm")
    assert grad_norm.expression == "agg_sum_all(fro(gW))" and "grad-norm" in grad_norm.description
    assert Objective(tasks).report(program(grad_norm.expression, tasks[0])).valid
    with pytest.raises(AutoproxError, match="unknown proxy 'zen'"):
        known_proxy("zen")
    with pytest.raises(AutoproxError, match="unknown algorithm 'ga'"):
        DiscoveryConfig(algorithm="ga").validate()
    task = tasks[0]
    with pytest.raises(AutoproxError, match="39 accuracies for 40 networks"):
        Task("short", task.bundle, task.accuracy[:-1], task.train, task.test)
    assert DiscoveryConfig().size_limit == 12  # the one place defaults live
    with pytest.raises(AutoproxError, match="device must be one of auto, cpu, cuda, cuda:N, got 'tpu'"):
        discover(tasks, DiscoveryConfig(iterations=1), "unused", device="tpu")
    assert resolve_device("cpu").type == "cpu"


def test_best_of_runs_picks_the_highest_training_jcm_never_the_heldout(runs, tmp_path):
    result, elitism, mu_plus_lambda = runs
    found = load_proxy(elitism / "proxies" / "rank01.json")
    train = found.fitness["jcm_train"]
    assert load_proxy(mu_plus_lambda / "proxies" / "rank01.json").fitness["jcm_train"] < train  # 1 generation
    assert best_of_runs([mu_plus_lambda, elitism]) == (elitism, found)

    def run(name: str, **fitness) -> Path:
        proxy = dataclasses.replace(found, fitness={**found.fitness, **fitness})
        save_proxy(tmp_path / name / "proxies" / "rank01.json", proxy)
        return tmp_path / name

    better_heldout = run("heldout", jcm_train=train - 0.01, jcm_test=0.99)
    better_train = run("train", jcm_train=train + 0.01, jcm_test=-0.5)
    chosen, proxy = best_of_runs([str(better_heldout), elitism, better_train, mu_plus_lambda])
    assert chosen == better_train and proxy.fitness["jcm_test"] == -0.5
    twin = run("twin")  # the same program and training JCM: the earlier run wins
    assert best_of_runs([twin, elitism])[0] == twin and best_of_runs([elitism, twin])[0] == elitism
    invalid = run("invalid", jcm_train=float("nan"))  # saved as null
    assert best_of_runs([invalid, mu_plus_lambda])[0] == mu_plus_lambda
    with pytest.raises(AutoproxError, match="no runs"):
        best_of_runs([])


def test_the_pareto_front_is_read_back_and_any_of_its_programs_saved(tasks, runs, tmp_path):
    result, elitism, _ = runs
    front = read_front(elitism)
    assert all(isinstance(r, FrontRow) for r in front) and [r.expression for r in front] == [
        str(i) for i in result.front
    ]
    assert [r.jcm_train for r in front] == [i.fitness.values[0] for i in result.front]
    assert all(np.isnan(r.jcm_validation) for r in front)  # no validation share in this run
    smallest = front_proxy(elitism, front[0].size)
    assert smallest.expression == front[0].expression and smallest.fitness["jcm_train"] == front[0].jcm_train
    assert (
        "jcm_validation" not in smallest.fitness and smallest.probe == load_proxy(elitism / "proxies/rank01.json").probe
    )
    scores = Evaluator(tasks[0].bundle)(smallest.tree())  # a usable proxy on the run's statistics
    assert scores.shape == (len(tasks[0].accuracy),)
    with pytest.raises(AutoproxError, match="has no Pareto front"):
        read_front(tmp_path)


def test_every_export_is_documented_and_the_package_never_imports_vit_space():
    import gp_proxy

    assert {"discover", "best_of_runs", "DiscoveryConfig", "load_proxy", "to_python"} <= set(gp_proxy.__all__)
    for name in gp_proxy.__all__:
        if name != "__version__":
            assert len(getattr(gp_proxy, name).__doc__ or "") > 40, name
    assert gp_proxy.discover is discover and gp_proxy.simplify is simplify  # the functions, not modules
    for path in Path(gp_proxy.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not [n for n in names if n.split(".")[0] == "vit_space"], path
    code = "import sys, gp_proxy; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'vit_space'}))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_language_correlations_and_reports(tasks, tmp_path, capsys):
    pset = build_pset(tasks[0].bundle.names, sorted(tasks[0].bundle.groups))
    tree = parse(PLANTED, pset)
    assert str(tree) == PLANTED and {"snip", "grad_norm", "weight_l2"} <= set(KNOWN_PROXIES)
    scores = Evaluator(tasks[0].bundle)(tree)
    task = tasks[0]
    c = correlations(scores, task.accuracy, task.test)
    assert c["n"] == len(task.test) and c["kendall"] == pytest.approx(
        kendall(scores[task.test], task.accuracy[task.test])
    )
    rep = report({t.name: Evaluator(t.bundle)(tree) for t in tasks}, tasks)
    assert isinstance(rep, Report) and rep.valid and rep.jcm_test > 0.5  # the planted signal, held out
    markdown = table(["proxy", "JCM"], [f"| planted | {rep.jcm_test:.3f} |"])
    assert markdown.splitlines()[:2] == ["| proxy | JCM |", "|---|---|"]
    text = write_report(tmp_path / "r.md", "Planted", "python x.py", markdown)
    assert (
        (tmp_path / "r.md").read_text() == text
        and text.startswith("# Planted")
        and "python x.py" in capsys.readouterr().out
    )
    write_text(tmp_path / "deep" / "t.txt", "x")
    assert (tmp_path / "deep" / "t.txt").read_text() == "x"
