import csv
import math

import pytest
import sympy
from deap import gp
from synthetic import planted_tasks

from gp_proxy.discovery import DiscoveryConfig, discover, task_pset
from gp_proxy.errors import AutoproxError
from gp_proxy.program import parse
from gp_proxy.store import load_proxy
from gp_proxy.symbolic import to_latex, to_sympy
from vit_space.cli import main
from vit_space.proxies.export import export_text, latex_table


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = DiscoveryConfig(iterations=30, population=20, hall_of_fame=5, seed=3)
    return out, discover(planted_tasks(), config, out, progress=False)


def test_halloffame_csv_is_the_saved_proxies_as_a_table(run):
    out, result = run
    with open(out / "halloffame.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result.saved) == 5
    pset = task_pset(planted_tasks())
    for row, path in zip(rows, result.saved, strict=True):
        proxy = load_proxy(path)
        tree = parse(proxy.expression, pset)
        assert row["expression"] == proxy.expression and int(row["rank"]) == proxy.provenance["rank"]
        assert int(row["size"]) == len(tree) and int(row["depth"]) == tree.height
        assert float(row["jcm_train"]) == pytest.approx(proxy.fitness["jcm_train"])
        assert float(row["jcm_test"]) == pytest.approx(proxy.fitness["jcm_test"])
        assert math.isnan(float(row["jcm_validation"]))  # no validation share in this run
        for task in ("data1", "data2"):
            assert float(row[f"tau_test:{task}"]) == pytest.approx(proxy.fitness["test"][task]["kendall"])
        assert row["simplified"] == str(proxy.expression != row["found_as"])
        assert row["found_as"] == proxy.simplification.get("original", proxy.expression)
        assert row["latex"] == to_latex(tree)


def test_latex_table_of_a_run_and_of_a_folder_without_one(run, tmp_path, capsys):
    out, result = run
    text = latex_table(out)
    lines = text.splitlines()
    assert lines[0].startswith(r"\begin{tabular}{rl") and lines[1] == r"\toprule" and lines[-1] == r"\end{tabular}"
    assert r"$\tau$ data1" in lines[2] and len([line for line in lines if line[:2].rstrip(" &").isdigit()]) == 5
    first = load_proxy(result.saved[0])
    assert lines[4].startswith("1 & $") and f"& {first.fitness['jcm_train']:.3f} &" in lines[4]
    assert main(["export", str(out), "--format", "latex-table"]) in (0, None)
    assert capsys.readouterr().out == text
    with pytest.raises(AutoproxError, match="holds no saved proxies"):
        latex_table(tmp_path)


def test_sympy_export_reads_back_in_plain_sympy(run):
    out, result = run
    proxy = load_proxy(result.saved[0])
    expr = sympy.sympify(export_text(proxy, "sympy"))  # no autoprox class needed to read it
    tree = parse(proxy.expression, task_pset(planted_tasks()))
    assert {s.name for s in expr.free_symbols} == {node.name for node in tree if isinstance(node, gp.Terminal)}
    assert str(expr) == str(to_sympy(tree))  # the same expression, its primitives now plain sympy functions
