"""Bad input a new user might give: out-of-range options, broken benchmark files, torn journals.
Each is refused on one line naming what to fix (exit 2), or repaired with a warning."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from gp_proxy.errors import AutoproxError, AutoproxWarning
from vit_space.bench import build as benchbuild
from vit_space.bench.benchmark import SHIPPED_DIR, load_bench
from vit_space.bench.build import journal_path, read_journal
from vit_space.bench.training import TrainResult
from vit_space.cli import main

AF_TINY = json.loads((SHIPPED_DIR / "af-tiny.json").read_text())["records"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- options out of range: refused by argparse, naming the option ---------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["search", "--space", "af-tiny", "--proxy", "params", "--out", "x", "--flops", "0"],
            "argument --flops: expected a number > 0, got '0'",
        ),
        (["stats", "--bench", "af-tiny", "--limit", "0"], "argument --limit: expected an integer >= 1, got '0'"),
        (["stats", "--bench", "af-tiny", "--limit", "-1"], "argument --limit: expected an integer >= 1, got '-1'"),
        (
            ["rank", "--bench", "af-tiny", "--proxy", "params", "--holdout", "-0.5"],
            "argument --holdout: expected a number in [0, 1), got '-0.5'",
        ),
        (["rank", "--bench", "af-tiny", "--proxy", "params", "--holdout", "1"], "argument --holdout"),
        (
            ["discover", "--bench", "af-tiny", "--out", "x", "--search-seed", "-1"],
            "argument --search-seed: expected an integer >= 0, got '-1'",
        ),
        (
            ["discover", "--bench", "af-tiny", "--out", "x", "--population", "3"],
            "argument --population: expected an integer >= 5",
        ),
        (
            ["discover", "--bench", "af-tiny", "--out", "x", "--size-limit", "100000"],
            "argument --size-limit: expected an integer in [3, 500]",
        ),
        (["search", "--space", "af-tiny", "--proxy", "params", "--out", "x", "--budget", "0"], "argument --budget"),
        (["score", "params", "--space", "af-tiny", "--sample", "-2"], "argument --sample: expected an integer >= 1"),
        (["stats", "--bench", "af-tiny", "--batch", "two"], "argument --batch: expected an integer >= 1, got 'two'"),
        (
            [
                "bench",
                "build",
                "--space",
                "af-tiny",
                "--dataset",
                "digits",
                "--archs",
                "1",
                "--out",
                "x",
                "--warmup",
                "1",
            ],
            "argument --warmup: expected a number in [0, 1)",
        ),
        (
            [
                "bench",
                "build",
                "--space",
                "af-tiny",
                "--dataset",
                "digits",
                "--archs",
                "1",
                "--out",
                "x",
                "--seeds",
                "0",
            ],
            "--seeds takes K >= 1",
        ),
        (
            [
                "bench",
                "build",
                "--space",
                "af-tiny",
                "--dataset",
                "digits",
                "--archs",
                "1",
                "--out",
                "x",
                "--seeds",
                "1,1",
            ],
            "distinct",
        ),
        (
            "bench build --space af-tiny --dataset digits --archs 1 --out x --threads 2 --cluster local:1".split(),
            "--threads sets this process's torch threads, which trains nothing with --cluster",
        ),
    ],
)
def test_out_of_range_options_are_refused_naming_the_option(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and not out


def test_fields_a_benchmark_lacks_are_refused_naming_those_it_has(capsys, tmp_path):
    code, out, err = run(capsys, "rank", "--bench", "af-tiny", "--proxy", "params", "--fields", "kd")
    assert code == 2 and not out
    assert "has no accuracy field for --fields kd; it has: fmnist_base_acc, digits_base_acc" in err
    code, _, err = run(capsys, "discover", "--bench", "af-tiny", "--fields", "kd", "--out", str(tmp_path / "d"))
    assert code == 2 and "'af-tiny' has no kd fields; it has: fmnist_base_acc, digits_base_acc" in err


# --- benchmark files -----------------------------------------------------------------------


def write_bench(tmp_path, records, name="mine.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"space": "af-tiny", "records": records}))
    return path


def records(count=4, **fields):
    """The first `count` shipped af-tiny records, with only their accuracy fields, `fields` set on record 1."""
    out = [{"arch": r["arch"], "fmnist_base_acc": r["fmnist_base_acc"]} for r in AF_TINY[:count]]
    out[1].update(fields)
    return out


def test_the_shipped_and_shared_benchmarks_load_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_bench("af-tiny")) == 100
        for name in ("autoformer", "pit"):
            try:
                assert len(load_bench(name)) == 100
            except AutoproxError as e:
                assert "not found" in str(e)  # ViT-Bench-101 is not on this machine


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), -1.0, 100.5, 1e308])
def test_accuracies_outside_0_to_100_are_refused(tmp_path, value):
    text = json.dumps({"space": "af-tiny", "records": records(fmnist_base_acc=value)})  # Infinity for inf
    (tmp_path / "mine.json").write_text(text)
    with pytest.raises(AutoproxError, match=r"mine\.json: record 1 field 'fmnist_base_acc' is .*in \[0, 100\]"):
        load_bench(tmp_path / "mine.json")


def test_missing_accuracies_are_allowed_but_an_empty_field_is_warned_about(tmp_path):
    path = write_bench(tmp_path, records(fmnist_base_acc=None, digits_base_acc=None))
    with pytest.warns(AutoproxWarning, match=r"mine\.json: field 'digits_base_acc' has no value in any record"):
        bench = load_bench(path)
    assert bench.fields == ["fmnist_base_acc"]
    assert np.isnan(bench.accuracy("fmnist_base_acc")).tolist() == [False, True, False, False]


def test_a_repeated_architecture_is_refused_when_its_accuracies_differ(tmp_path):
    rows = records()
    rows.append({**rows[1], "fmnist_base_acc": rows[1]["fmnist_base_acc"] + 1})
    with pytest.raises(
        AutoproxError,
        match=r"mine\.json: record 4 repeats the architecture of record 1 "
        r"with another fmnist_base_acc",
    ):
        load_bench(write_bench(tmp_path, rows))


def test_a_repeated_architecture_with_the_same_accuracies_counts_once(tmp_path):
    rows = records()
    rows += [dict(rows[1]), dict(rows[0])]
    with pytest.warns(AutoproxWarning, match=r"mine\.json: record\(s\) 4 \(= 1\), 5 \(= 0\) repeat"):
        bench = load_bench(write_bench(tmp_path, rows))
    assert len(bench) == 4 and list(bench.archs) == [r["arch"] for r in rows[:4]]


def test_a_bad_architecture_names_the_file_and_record(tmp_path):
    rows = records()
    rows[2] = {**rows[2], "arch": {**rows[2]["arch"], "depth": 99}}
    with pytest.raises(AutoproxError, match=r"mine\.json: record 2: af-tiny arch: depth=99 is not allowed"):
        load_bench(write_bench(tmp_path, rows))


def test_cli_prints_a_warning_on_one_line(capsys, tmp_path):
    rows = records()
    path = write_bench(tmp_path, rows + [dict(rows[0])])
    code, out, err = run(capsys, "bench", "show", "--bench", str(path))
    assert code == 0 and "4 af-tiny architectures" in out
    assert err.startswith("autoprox: warning: ") and "record(s) 4 (= 0) repeat" in err and err.count("\n") == 1


# --- the build journal ---------------------------------------------------------------------


@pytest.fixture
def fake_training(monkeypatch):
    """Training replaced by an instant fake whose accuracy depends on the architecture and seed."""

    def train(space, arch, data, recipe, seed, device="cpu"):
        return TrainResult(top1=float(int(space.arch_hash(arch)[:4], 16) % 90) + seed, seconds=0.01, final_loss=1.0)

    monkeypatch.setattr(benchbuild, "train", train)


BUILD = [
    "bench",
    "build",
    "--space",
    "af-tiny",
    "--dataset",
    "digits",
    "--archs",
    "2",
    "--seeds",
    "1",
    "--steps",
    "5",
    "--quiet",
]


def test_a_resumed_build_sets_a_torn_last_line_aside(capsys, tmp_path, fake_training):
    out = tmp_path / "b.json"
    assert run(capsys, *BUILD, "--out", str(out))[0] == 0
    journal = journal_path(out)
    complete = journal.read_text()
    with open(journal, "r+b") as f:  # an interruption cut the last run's line: 20 bytes short
        f.truncate(len(complete.encode()) - 20)
    code, _, err = run(capsys, *BUILD, "--out", str(out), "--resume")
    assert code == 0 and f"{journal}: line 3 was cut off" in err and f"moved it to {journal}.torn" in err
    assert journal.with_name("b.runs.jsonl.torn").read_text() == complete.splitlines()[2][:-19] + "\n"
    assert journal.read_text() == complete  # the cut run was trained again and every line is whole
    code, _, err = run(capsys, *BUILD, "--out", str(out), "--resume")  # and resumes go on working
    assert code == 0 and not err and len(read_journal(journal)[1]) == 2


def test_a_last_line_missing_only_its_newline_is_kept(capsys, tmp_path, fake_training):
    out = tmp_path / "b.json"
    assert run(capsys, *BUILD, "--out", str(out))[0] == 0
    journal = journal_path(out)
    complete = journal.read_text()
    journal.write_text(complete[:-1])
    assert run(capsys, *BUILD, "--out", str(out), "--resume")[0] == 0
    assert journal.read_text() == complete and not journal.with_name("b.runs.jsonl.torn").exists()


def test_a_corrupt_journal_line_is_named_by_its_number(capsys, tmp_path, fake_training):
    out = tmp_path / "b.json"
    assert run(capsys, *BUILD, "--out", str(out))[0] == 0
    journal = journal_path(out)
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text(lines[0] + lines[1] + lines[2][:30] + lines[2])  # an old glued line
    code, _, err = run(capsys, *BUILD, "--out", str(out), "--resume")
    assert code == 2 and f"{journal} is corrupt: line 3:" in err and "delete that line" in err
    journal.write_text(lines[0] + '{"arch": "x"}\n')
    with pytest.raises(AutoproxError, match=r"line 2 is a run without \['dataset', 'seconds', 'seed', 'top1'\]"):
        read_journal(journal)
