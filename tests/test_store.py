import json
import os
import stat
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gp_proxy.atomic import write_text
from gp_proxy.errors import AutoproxError
from gp_proxy.program import MAX_PROGRAM_NODES
from gp_proxy.store import SavedProxy, load_proxy, save_proxy

NAMES, GROUPS = ["W", "gW", "X"], ["all", "msa"]


def proxy(expression: str = "agg_sum_all(l1(mul(W, gW)))") -> SavedProxy:
    return SavedProxy(
        expression, NAMES, GROUPS, {"sketch_size": 32}, {"jcm_train": 0.5, "jcm_test": float("nan")}, {"seed": 1}
    )


def test_round_trip(tmp_path):
    path = save_proxy(tmp_path / "p.json", proxy())
    loaded = load_proxy(path)
    assert loaded.expression == "agg_sum_all(l1(mul(W, gW)))" and str(loaded.tree()) == loaded.expression
    assert loaded.probe == {"sketch_size": 32} and loaded.fitness["jcm_test"] is None  # NaN is written as null
    assert loaded.provenance["seed"] == 1 and "engine_version" in loaded.provenance


def test_invalid_expression_is_never_saved(tmp_path):
    with pytest.raises(AutoproxError, match="unknown statistic 'Z'"):
        save_proxy(tmp_path / "p.json", proxy("agg_sum_all(l1(Z))"))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(format="other"), "not an autoprox proxy file"),
        (lambda d: d.update(version=99), "unsupported proxy file version 99"),
        (lambda d: d.update(expression=5), 'needs a string "expression"'),
        (lambda d: d["statistics"].update(names="W"), 'needs lists "names" and "groups"'),
        (lambda d: d.update(fitness=[1]), '"fitness" must be an object'),
        (lambda d: d.update(expression="agg_sum_all(l1(mul(W)))"), "wrong number of arguments"),
        (lambda d: d.update(expression="agg_sum_all(mul(W, gW))"), "type mismatch"),
        (lambda d: d.update(expression="__import__('os').system('touch /tmp/x')"), "unexpected character"),
        (lambda d: d["statistics"].update(names=["W", "os.system('x')"]), "invalid statistic name"),
    ],
)
def test_malformed_files_are_rejected(tmp_path, edit, message):
    payload = json.loads(proxy().to_json())
    edit(payload)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(AutoproxError, match=message.replace("(", r"\(")):
        load_proxy(path)


def test_not_json_and_missing(tmp_path):
    (tmp_path / "p.json").write_bytes(b"\xff\xfe not json")
    with pytest.raises(AutoproxError, match="not a JSON proxy file"):
        load_proxy(tmp_path / "p.json")
    with pytest.raises(AutoproxError, match="cannot read proxy file"):
        load_proxy(tmp_path / "missing.json")


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=30),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
        max_leaves=30,
    )
)
def test_fuzzed_json_is_rejected_cleanly(tmp_path_factory, junk):
    path = tmp_path_factory.mktemp("fuzz") / "p.json"
    path.write_text(
        json.dumps(
            {
                "format": "autoprox-proxy",
                "version": 1,
                "expression": junk,
                "statistics": {"names": NAMES, "groups": GROUPS},
            }
        )
    )
    try:
        load_proxy(path)
    except AutoproxError:
        return
    assert isinstance(junk, str)  # only a string could ever be a valid expression


TOKENS = st.sampled_from(
    [
        "agg_sum_all",
        "fro",
        "mul",
        "l1",
        "s_add",
        "u_log",
        "W",
        "gW",
        "(",
        ")",
        ",",
        " ",
        "X",
        "__import__",
        "os.system",
        "1e999",
        "'",
        ";",
        "lambda",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(TOKENS, max_size=40))
def test_fuzzed_expressions_parse_exactly_or_are_rejected(tmp_path_factory, tokens):
    """Token soup over primitive and statistic names and hostile words: every file either loads
    as a program that prints back to itself, or is refused with one AutoproxError."""
    payload = json.loads(proxy().to_json())
    payload["expression"] = "".join(tokens)
    path = tmp_path_factory.mktemp("fuzz") / "p.json"
    path.write_text(json.dumps(payload))
    try:
        loaded = load_proxy(path)
    except AutoproxError:
        return
    assert str(loaded.tree()) == loaded.expression.replace(" ", "").replace(",", ", ")


@pytest.mark.parametrize(
    "expression, message",
    [
        ("abs(" * 5000 + "W" + ")" * 5000, "more than 500 nodes"),
        ("abs(" * 60 + "W" + ")" * 60, "nested deeper than 50 levels"),
        ("agg_sum_all(fro(W))" + ")" * 3, "trailing text"),
        ("agg_sum_all(fro(W)", "unexpected end of expression"),
    ],
)
def test_hostile_expressions_are_refused(tmp_path, expression, message):
    payload = json.loads(proxy().to_json())
    payload["expression"] = expression
    (tmp_path / "p.json").write_text(json.dumps(payload))
    with pytest.raises(AutoproxError, match=message):
        load_proxy(tmp_path / "p.json")


def test_huge_numbers_and_wrong_simplification_are_refused(tmp_path):
    payload = json.loads(proxy().to_json())
    (tmp_path / "p.json").write_text(json.dumps(payload).replace('"version": 1', '"version": 1e999'))
    with pytest.raises(AutoproxError, match="unsupported proxy file version"):
        load_proxy(tmp_path / "p.json")
    payload["simplification"] = "dropped everything"
    (tmp_path / "p.json").write_text(json.dumps(payload))
    with pytest.raises(AutoproxError, match='"simplification" must be an object'):
        load_proxy(tmp_path / "p.json")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_saved_files_get_the_umask_permissions(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = save_proxy(tmp_path / "p.json", proxy())
        write_text(tmp_path / "t.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode and stat.S_IMODE((tmp_path / "t.txt").stat().st_mode) == mode


def test_a_huge_saved_proxy_is_refused_before_it_is_built(tmp_path):
    leaf = "agg_sum_all(l1(mul(W, gW)))"
    expression = leaf
    for _ in range(16):  # ~330k nodes, ~4 MB, 17 levels deep
        expression = f"s_add({expression}, {expression})"
    path = tmp_path / "huge.json"
    path.write_text(proxy(leaf).to_json().replace(json.dumps(leaf), json.dumps(expression)))
    start = time.perf_counter()
    with pytest.raises(AutoproxError, match=f"huge.json: expression has more than {MAX_PROGRAM_NODES} nodes"):
        load_proxy(path)
    assert time.perf_counter() - start < 1
