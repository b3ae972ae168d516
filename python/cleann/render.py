"""Pictures of explanations: a standalone HTML page (inline CSS, JS and SVG, no network) or a
fragment of it for notebooks.

A PAG over hundreds of tokens cannot be read whole, so each head's drawing shows the
neighbourhood of the target and of that head's explanation: those tokens and their graph
neighbours, at most ``max_nodes`` of them, the closest by graph distance first. The caption says
how much of the graph is left out.
"""

from __future__ import annotations

import html
import math
import shutil
import subprocess
from collections import deque

import numpy as np

from .errors import ArgumentError
from .graph import ARROW, CIRCLE, TAIL, Graph

MAX_NODES = 40
NODE_R = 7.0
_EDGE = {(TAIL, ARROW): "-->", (ARROW, ARROW): "<->", (CIRCLE, ARROW): "o->", (CIRCLE, CIRCLE): "o-o",
         (TAIL, TAIL): "---", (CIRCLE, TAIL): "o--"}
# colour scale of token scores: light grey at 0, orange at 0.5, dark red-orange at 1
_SCALE = ((0.0, (246, 246, 246)), (0.5, (253, 174, 107)), (1.0, (204, 60, 2)))


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def score_colour(score: float) -> str:
    """The colour of a token score in [0, 1] on the report's scale (values outside are clipped)."""
    s = min(max(float(score), 0.0), 1.0) if score == score else 0.0
    for (s0, c0), (s1, c1) in zip(_SCALE, _SCALE[1:]):
        if s <= s1:
            t = (s - s0) / (s1 - s0)
            return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(c0, c1))
    return "#" + "".join(f"{v:02x}" for v in _SCALE[-1][1])


def edge_symbol(mark_at_a: int, mark_at_b: int) -> str:
    """``"o->"``-style text of an edge a *-* b from its marks at a and at b."""
    left = {CIRCLE: "o", ARROW: "<", TAIL: "-"}[int(mark_at_a)]
    right = {CIRCLE: "o", ARROW: ">", TAIL: "-"}[int(mark_at_b)]
    return f"{left}-{right}"


def token_label(tokens, pos: int, width: int = 14) -> str:
    """``token(position)``, the token cut to ``width`` characters."""
    tok = str(tokens[pos]) if 0 <= pos < len(tokens) else "?"
    if len(tok) > width:
        tok = tok[:width - 1] + "\u2026"
    return f"{tok}({pos})"


def token_scores(res) -> list[float]:
    """One score in [0, 1] per token: ``res.token_scores`` when the result has them, else the
    fraction of the smallest explanations that contain the token."""
    n = len(res.tokens)
    given = getattr(res, "token_scores", None)
    if given is not None and len(given) == n:
        return [min(max(float(v), 0.0), 1.0) if v is not None and v == v else 0.0 for v in given]
    sets = list(getattr(res, "smallest", None) or [])
    out = [0.0] * n
    for s in sets:
        for p in set(s):
            if 0 <= p < n:
                out[p] += 1.0 / len(sets)
    return out


def neighbourhood(graph: Graph, seeds, max_nodes: int = MAX_NODES, radius: int = 1) -> tuple[list[int], dict]:
    """The nodes to draw around ``seeds`` (token indices; the first is the target).

    Seeds come first (in the order given, those that are nodes of the graph), then the nodes within
    ``radius`` steps of a seed, closest first; ties go to the node adjacent to more seeds, then to
    the lower token index. At most ``max_nodes`` nodes.

    Returns:
        (tokens, distance): the chosen token indices in that order, and {token: graph distance to
        the nearest seed} for them.
    """
    if max_nodes < 1:
        raise ArgumentError(f"max_nodes must be at least 1, got {max_nodes}")
    index = {int(t): k for k, t in enumerate(graph.nodes.tolist())}
    adj = graph.adjacency
    start = list(dict.fromkeys(index[int(s)] for s in seeds if int(s) in index))[:max_nodes]
    dist = {k: 0 for k in start}
    queue = deque(start)
    while queue:
        k = queue.popleft()
        if dist[k] >= radius:
            continue
        for j in np.flatnonzero(adj[k]).tolist():
            if j not in dist:
                dist[j] = dist[k] + 1
                queue.append(j)
    seed_mask = np.zeros(graph.num_nodes, dtype=bool)
    seed_mask[start] = True
    rest = sorted((k for k in dist if dist[k] > 0),
                  key=lambda k: (dist[k], -int(adj[k, seed_mask].sum()), int(graph.nodes[k])))
    chosen = (start + rest)[:max_nodes]
    return [int(graph.nodes[k]) for k in chosen], {int(graph.nodes[k]): dist[k] for k in chosen}


def subgraph(graph: Graph, tokens) -> Graph:
    """The graph induced on ``tokens`` (token indices), marks kept."""
    index = {int(t): k for k, t in enumerate(graph.nodes.tolist())}
    keep = sorted(index[int(t)] for t in tokens)
    return Graph(graph.marks[np.ix_(keep, keep)], graph.nodes[keep], graph.kind)


def _graphviz_positions(sub: Graph, labels) -> dict | None:
    exe = shutil.which("neato")
    if exe is None:
        return None
    dot = sub.to_dot(labels=[labels[int(t)] if int(t) < len(labels) else str(int(t)) for t in sub.nodes])
    try:
        out = subprocess.run([exe, "-Tplain", "-Gstart=1", "-Goverlap=false", "-Gsplines=false", "-Nshape=circle",
                              "-Nwidth=0.3", "-Nfixedsize=true"], input=dot, capture_output=True, text=True,
                             timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    pos = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "node" and parts[1].startswith("n"):
            pos[int(parts[1][1:])] = (float(parts[2]), -float(parts[3]))  # plain's y grows upwards
    return pos if len(pos) == sub.num_nodes else None


def _networkx_positions(sub: Graph) -> dict:
    import networkx as nx

    toks = [int(t) for t in sub.nodes]
    g = nx.Graph()
    g.add_nodes_from(toks)
    g.add_edges_from((toks[a], toks[b]) for a, b, _, _ in sub.edges())
    if len(toks) == 1:
        return {toks[0]: (0.0, 0.0)}
    # kamada-kawai over graph distances, with pairs in different components one step further
    # apart than the farthest connected pair, so components sit side by side, not far away
    lengths = dict(nx.all_pairs_shortest_path_length(g))
    far = max((d for row in lengths.values() for d in row.values()), default=0) + 1
    dist = {a: {b: lengths[a].get(b, far) for b in toks} for a in toks}
    try:
        pos = nx.kamada_kawai_layout(g, dist=dist, pos=nx.circular_layout(g))
    except ImportError:  # kamada-kawai needs scipy
        pos = nx.spring_layout(g, seed=1, iterations=200)
    return {int(k): (float(v[0]), float(v[1])) for k, v in pos.items()}


def _separate(xy: np.ndarray, half_w: np.ndarray, half_h: np.ndarray, rounds: int = 400) -> np.ndarray:
    """Pushes apart nodes whose boxes (circle and label) overlap, along the axis of least overlap;
    deterministic."""
    xy = xy.copy()
    k = len(xy)
    for _ in range(rounds):
        moved = False
        for a in range(k):
            for b in range(a + 1, k):
                dx, dy = xy[b, 0] - xy[a, 0], xy[b, 1] - xy[a, 1]
                ox = half_w[a] + half_w[b] - abs(dx)
                oy = half_h[a] + half_h[b] - abs(dy)
                if ox > 0 and oy > 0:
                    moved = True
                    if ox < oy:
                        s = 1.0 if dx > 0 or (dx == 0 and a < b) else -1.0
                        xy[a, 0] -= s * (ox / 2 + 0.5)
                        xy[b, 0] += s * (ox / 2 + 0.5)
                    else:
                        s = 1.0 if dy > 0 or (dy == 0 and a < b) else -1.0
                        xy[a, 1] -= s * (oy / 2 + 0.5)
                        xy[b, 1] += s * (oy / 2 + 0.5)
        if not moved:
            break
    return xy


def layout(sub: Graph, labels, method: str = "auto") -> dict:
    """Pixel positions {token: (x, y)} of ``sub``'s nodes, at least a node and its label apart.

    ``method``: "graphviz" (neato, when on PATH), "networkx" (Kamada-Kawai) or "auto" (Graphviz
    when present, else networkx). The same graph always gets the same picture.
    """
    if method not in ("auto", "graphviz", "networkx"):
        raise ArgumentError(f"method must be 'auto', 'graphviz' or 'networkx', got {method!r}")
    toks = [int(t) for t in sub.nodes]
    pos = _graphviz_positions(sub, labels) if method in ("auto", "graphviz") else None
    if pos is None:
        pos = _networkx_positions(sub)
    xy = np.array([pos[t] for t in toks], dtype=float)
    k = len(toks)
    side = 200 + 90 * math.sqrt(k)  # the drawing's size grows with the node count
    span = np.ptp(xy, axis=0) if k > 1 else np.ones(2)
    span[span == 0] = 1.0
    xy = (xy - xy.min(axis=0)) / span.max() * side
    half_w = np.array([max(NODE_R, 3.4 * len(token_label(labels, t))) + 3 for t in toks])
    half_h = np.full(k, NODE_R + 8.0)
    xy = _separate(xy, half_w, half_h)
    return {t: (float(x), float(y)) for t, (x, y) in zip(toks, xy)}


def _edge_end_marks(mark: int, tip, ux: float, uy: float, cls: str) -> str:
    """SVG of the mark at one end of an edge; ``tip`` is where the edge meets the node, (ux, uy)
    points from the edge into the node."""
    x, y = tip
    if mark == ARROW:
        bx, by = x - ux * 9, y - uy * 9
        px, py = -uy * 4, ux * 4
        return (f'<path class="mark arrow {cls}" d="M{x:.1f},{y:.1f} L{bx + px:.1f},{by + py:.1f} '
                f'L{bx - px:.1f},{by - py:.1f} z"/>')
    if mark == CIRCLE:
        return f'<circle class="mark circle {cls}" cx="{x - ux * 3.5:.1f}" cy="{y - uy * 3.5:.1f}" r="3.5"/>'
    return ""


def graph_svg(graph: Graph, labels, target: int | None = None, highlight=(), *, max_nodes: int = MAX_NODES,
              scores=None, method: str = "auto") -> tuple[str, dict]:
    """SVG of the neighbourhood of ``target`` and ``highlight`` (token indices) in ``graph``.

    Args:
        labels: one token per token index; nodes are labelled ``token(position)``.
        scores: optional score in [0, 1] per token index, the node's fill colour.

    Returns:
        (svg, info): info has "nodes", "edges" (drawn) and "total_nodes", "total_edges".
    """
    seeds = ([int(target)] if target is not None else []) + [int(h) for h in highlight]
    if not seeds:
        seeds = [int(graph.nodes[0])] if graph.num_nodes else []
    toks, _ = neighbourhood(graph, seeds, max_nodes) if seeds else ([], {})
    info = {"nodes": len(toks), "total_nodes": graph.num_nodes, "total_edges": len(graph.edges())}
    if not toks:
        info["edges"] = 0
        return '<svg class="pag" xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>', info
    sub = subgraph(graph, toks)
    pos = layout(sub, labels, method)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    pad_x = max(3.4 * len(token_label(labels, t)) for t in toks) + 8
    x0, y0 = min(xs) - pad_x, min(ys) - NODE_R - 6
    w, h = max(xs) - min(xs) + 2 * pad_x, max(ys) - min(ys) + 2 * NODE_R + 28
    hl = {int(v) for v in highlight}
    focus = hl | ({int(target)} if target is not None else set())
    out = [f'<svg class="pag" xmlns="http://www.w3.org/2000/svg" viewBox="{x0:.1f} {y0:.1f} {w:.1f} {h:.1f}" '
           f'width="{w:.0f}" height="{h:.0f}" role="img">']
    edges = sub.edges()
    info["edges"] = len(edges)
    nodes = sub.nodes.tolist()
    for a, b, at_a, at_b in edges:
        ta, tb = int(nodes[a]), int(nodes[b])
        (x1, y1), (x2, y2) = pos[ta], pos[tb]
        d = math.hypot(x2 - x1, y2 - y1) or 1.0
        ux, uy = (x2 - x1) / d, (y2 - y1) / d
        s = (x1 + ux * NODE_R, y1 + uy * NODE_R)
        e = (x2 - ux * NODE_R, y2 - uy * NODE_R)
        sym = edge_symbol(at_a, at_b)
        cls = "near" if ta in focus or tb in focus else "far"
        title = f"{token_label(labels, ta)} {sym} {token_label(labels, tb)}"
        out.append(f'<g class="edge {cls}" data-a="{ta}" data-b="{tb}" data-edge="{_esc(sym)}">'
                   f'<title>{_esc(title)}</title>'
                   f'<line x1="{s[0]:.1f}" y1="{s[1]:.1f}" x2="{e[0]:.1f}" y2="{e[1]:.1f}"/>'
                   + _edge_end_marks(at_a, s, -ux, -uy, cls) + _edge_end_marks(at_b, e, ux, uy, cls) + "</g>")
    for t in toks:
        x, y = pos[t]
        role = "target" if t == target else "explanation" if t in hl else "neighbour"
        fill = score_colour(scores[t]) if scores is not None and t < len(scores) else "#ffffff"
        full = f"{labels[t] if t < len(labels) else '?'}({t})"
        out.append(f'<g class="node {role}" data-pos="{t}"><title>{_esc(full)}</title>'
                   f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{NODE_R:.0f}" fill="{fill}"/>'
                   f'<text x="{x:.1f}" y="{y + NODE_R + 11:.1f}">{_esc(token_label(labels, t))}</text></g>')
    out.append("</svg>")
    return "\n".join(out), info


def report_html(title: str, sections: list[tuple[str, str]]) -> str:
    """A standalone HTML page: a title and (heading, HTML body) sections."""
    body = "\n".join(f"<h2>{html.escape(h)}</h2>\n{content}" for h, content in sections)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
            "mark.x{background:#f5a623}mark.t{background:#e74c3c;color:white}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


_CSS = """
.cleann-report{font-family:system-ui,sans-serif;color:#222;line-height:1.45;max-width:76em}
.cleann-report h2{font-size:1.15em;margin:1.2em 0 .4em}
.cleann-report .summary td,.cleann-report .summary th{padding:.1em .8em .1em 0;text-align:left}
.cleann-report .warn{background:#fff3cd;border:1px solid #e0c060;padding:.1em .4em;border-radius:3px}
.cleann-report .text{font-size:1.05em;line-height:2.1}
.cleann-report .tok{padding:.15em .2em;border-radius:3px;white-space:pre}
.cleann-report .tok.target{outline:2px solid #1f5fbf;outline-offset:1px}
.cleann-report .scale{display:flex;align-items:center;gap:.5em;font-size:.85em;margin:.3em 0}
.cleann-report .scale .bar{width:12em;height:.8em;border:1px solid #999;
 background:linear-gradient(to right,#f6f6f6,#fdae6b,#cc3c02)}
.cleann-report table.sets{border-collapse:collapse;font-size:.92em}
.cleann-report table.sets td,.cleann-report table.sets th{border-bottom:1px solid #ddd;padding:.2em .7em;
 text-align:left;vertical-align:top}
.cleann-report tr.smallest td:first-child{font-weight:600}
.cleann-report .head-select{display:flex;flex-wrap:wrap;gap:.3em;margin:.4em 0}
.cleann-report .head-select button{font:inherit;font-size:.85em;padding:.2em .6em;border:1px solid #888;
 border-radius:3px;background:#fff;cursor:pointer}
.cleann-report .head-select button.none{color:#888;border-style:dashed}
.cleann-report .head-select button[aria-pressed=true]{background:#1f5fbf;color:#fff;border-color:#1f5fbf}
.cleann-report figure.head{margin:.5em 0 1.5em;overflow-x:auto}
.cleann-report figcaption{font-size:.9em;color:#444;max-width:60em}
.cleann-report svg.pag{max-width:100%;height:auto;font-family:system-ui,sans-serif;font-size:11px}
.cleann-report svg.pag line{stroke:#bbb;stroke-width:1}
.cleann-report svg.pag .near line{stroke:#555;stroke-width:1.4}
.cleann-report svg.pag .mark.arrow{fill:#bbb}.cleann-report svg.pag .mark.arrow.near{fill:#555}
.cleann-report svg.pag .mark.circle{fill:#fff;stroke:#bbb}.cleann-report svg.pag .mark.circle.near{stroke:#555}
.cleann-report svg.pag .node circle{stroke:#666;stroke-width:1}
.cleann-report svg.pag .node.explanation circle{stroke:#222;stroke-width:2.5}
.cleann-report svg.pag .node.target circle{stroke:#1f5fbf;stroke-width:3}
.cleann-report svg.pag text{text-anchor:middle;paint-order:stroke;stroke:#fff;stroke-width:3px;fill:#222}
.cleann-report svg.pag .node.target text{font-weight:700;fill:#1f5fbf}
.cleann-report .legend{display:flex;flex-wrap:wrap;gap:1.2em;font-size:.85em;align-items:center}
.cleann-report .legend svg{vertical-align:middle}
"""

# Builds the head selector from the figures and shows one at a time; without JS every head shows.
_JS = """
(function(){
var root=document.currentScript.closest('.cleann-report');if(!root)return;
var figs=Array.prototype.slice.call(root.querySelectorAll('figure.head'));
var bar=root.querySelector('.head-select');var buttons=[];
function show(i){figs.forEach(function(f,k){f.hidden=k!==i;});
buttons.forEach(function(b,k){b.setAttribute('aria-pressed',k===i?'true':'false');});root.dataset.shown=figs[i].dataset.head;}
figs.forEach(function(f,k){var b=document.createElement('button');b.type='button';
b.textContent=f.dataset.label;b.className=f.dataset.explained==='1'?'has':'none';
b.dataset.head=f.dataset.head;b.addEventListener('click',function(){show(k);});bar.appendChild(b);buttons.push(b);});
var first=figs.findIndex(function(f){return f.dataset.head===root.dataset.head;});
if(figs.length)show(first<0?0:first);
})();
"""


def _legend() -> str:
    def sample(at_a, at_b):
        parts = ['<svg class="pag" width="64" height="14" viewBox="0 0 64 14">',
                 '<g class="edge near"><line x1="10" y1="7" x2="54" y2="7"/>',
                 _edge_end_marks(at_a, (10, 7), -1, 0, "near"), _edge_end_marks(at_b, (54, 7), 1, 0, "near"),
                 "</g></svg>"]
        return "".join(parts)

    items = [(TAIL, ARROW, "-->", "a causes b"), (ARROW, ARROW, "<->", "a latent common cause"),
             (CIRCLE, ARROW, "o->", "b is not an ancestor of a"), (CIRCLE, CIRCLE, "o-o", "undetermined"),
             (TAIL, TAIL, "---", "undirected")]
    marks = "".join(f'<span title="{_esc(why)}">a {sample(x, y)} b <code>{_esc(s)}</code></span>'
                    for x, y, s, why in items)
    nodes = ('<span><svg class="pag" width="18" height="18" viewBox="0 0 18 18"><g class="node target">'
             '<circle cx="9" cy="9" r="6" fill="#fff"/></g></svg> target</span>'
             '<span><svg class="pag" width="18" height="18" viewBox="0 0 18 18"><g class="node explanation">'
             '<circle cx="9" cy="9" r="6" fill="#fdae6b"/></g></svg> in this head\'s explanation '
             '(fill: token score)</span>')
    return f'<div class="legend">{marks}{nodes}</div>'


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    try:
        return f"{float(v):.{digits}g}"
    except (TypeError, ValueError):
        return str(v)


def _set_label(tokens, s) -> str:
    return " ".join(_esc(token_label(tokens, int(p), 24)) for p in s)


def _collect_sets(res) -> list[dict]:
    """The explanations of all heads, each once: positions, margin after removal, heads."""
    found: dict[tuple, dict] = {}
    for h in res.heads:
        margins = list(getattr(h, "margins", None) or [])
        for k, s in enumerate(getattr(h, "sets", None) or []):
            key = tuple(sorted(int(p) for p in s))
            e = found.setdefault(key, {"set": key, "margin": None, "heads": []})
            if e["margin"] is None and k < len(margins):
                e["margin"] = margins[k]
            e["heads"].append(int(h.head))
    smallest = [tuple(sorted(int(p) for p in s)) for s in (getattr(res, "smallest", None) or [])]
    for s, m in zip(smallest, getattr(res, "margins", None) or []):
        if s in found and found[s]["margin"] is None:
            found[s]["margin"] = m
    return sorted(found.values(), key=lambda e: (len(e["set"]), e["margin"] if e["margin"] is not None else
                                                 math.inf, e["set"]))


def _summary(res) -> str:
    rows = [("prediction", f"<b>{_esc(res.prediction)}</b>")]
    for name in ("label", "goal", "score_kind"):
        v = getattr(res, name, None)
        if v is not None:
            rows.append((name.replace("_", " "), _esc(v)))
    margin = getattr(res, "margin", None)
    if margin is not None:
        flag = ' <span class="warn">low margin: the prediction is close to changing</span>' \
            if getattr(res, "low_margin", None) else ""
        rows.append(("margin", _esc(_fmt(margin)) + flag))
    elif getattr(res, "low_margin", None):
        rows.append(("margin", '<span class="warn">low margin</span>'))
    for name in ("comprehensiveness", "sufficiency"):
        v = getattr(res, name, None)
        if v is not None:
            rows.append((name, _esc(_fmt(v))))
    status = getattr(res, "status", None)
    if status is not None:
        proven = " (minimality proven)" if getattr(res, "minimal_proven", False) else ""
        rows.append(("status", _esc(f"{status}{proven}, search {getattr(res, 'search', '?')}")))
    counts = getattr(res, "counts", None) or {}
    if counts:
        rows.append(("cost", _esc(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))))
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    scores = getattr(res, "scores", None)
    extra = ""
    if scores:
        kind = getattr(res, "score_kind", None)
        cells = "".join(f"<tr><td>{_esc(s.get('label'))}</td><td>{_esc(_fmt(s.get('score')))}</td></tr>"
                        for s in scores if isinstance(s, dict))
        cap = f"<caption>scores ({_esc(kind)})</caption>" if kind else "<caption>scores</caption>"
        extra = f'<table class="sets scores">{cap}<tr><th>label</th><th>score</th></tr>{cells}</table>'
    return f'<table class="summary">{body}</table>{extra}'


def _text(res, scores) -> str:
    spans = []
    for p, tok in enumerate(res.tokens):
        s = scores[p]
        fg = "#fff" if s > 0.7 else "#222"
        cls = "tok target" if p == res.target else "tok"
        spans.append(f'<span class="{cls}" data-pos="{p}" data-score="{s:.3f}" style="background:{score_colour(s)};'
                     f'color:{fg}" title="{_esc(token_label(res.tokens, p, 60))}: score {s:.2f}">{_esc(tok)}</span>')
    given = getattr(res, "token_scores", None) is not None and len(getattr(res, "token_scores")) == len(res.tokens)
    what = ("how often the token is in the smallest explanations across heads" if given
            else "the fraction of the smallest explanations that contain the token")
    scale = (f'<div class="scale">token score ({_esc(what)}): <span>0</span><span class="bar"></span>'
             '<span>1</span>; the target is outlined</div>')
    return f'<p class="text">{" ".join(spans)}</p>{scale}'


def _sets_table(res, limit: int = 40) -> str:
    sets = _collect_sets(res)
    if not sets:
        best = getattr(res, "best", None)
        msg = f"<p>No explanation found (status {_esc(getattr(res, 'status', 'none'))}).</p>"
        if best:
            msg += (f"<p>Closest set judged (not an explanation): {_set_label(res.tokens, best)}, margin after "
                    f"removal {_esc(_fmt(getattr(res, 'best_margin', None)))}</p>")
        return msg
    k = len(sets[0]["set"])
    rows = []
    for e in sets[:limit]:
        cls = ' class="smallest"' if len(e["set"]) == k else ""
        heads = ", ".join(str(h) for h in e["heads"])
        rows.append(f"<tr{cls}><td>{_set_label(res.tokens, e['set'])}</td><td>{len(e['set'])}</td>"
                    f"<td>{_esc(_fmt(e['margin']))}</td><td>{_esc(heads)}</td></tr>")
    more = f"<p>{len(sets) - limit} more sets not listed.</p>" if len(sets) > limit else ""
    base = getattr(res, "margin", None)
    note = f" (margin of the unmodified text: {_esc(_fmt(base))}; at or below 0 the prediction changes)" \
        if base is not None else ""
    return (f'<table class="sets"><caption>{len(sets)} distinct explanations over the heads, smallest first{note}'
            '</caption><tr><th>tokens removed, token(position)</th><th>size</th><th>margin after removal</th>'
            f'<th>heads</th></tr>{"".join(rows)}</table>{more}')


def _head_figure(res, h, scores, max_nodes: int, method: str) -> str:
    sets = [tuple(int(p) for p in s) for s in (getattr(h, "sets", None) or [])]
    members = list(dict.fromkeys(p for s in sets for p in s))
    members.sort(key=lambda p: (-scores[p] if p < len(scores) else 0, p))
    svg, info = graph_svg(h.graph, res.tokens, res.target, members, max_nodes=max_nodes, scores=scores,
                          method=method)
    hidden_n, hidden_e = info["total_nodes"] - info["nodes"], info["total_edges"] - info["edges"]
    if sets:
        what = (f"Head {h.head}: {len(sets)} explanation{'s' if len(sets) != 1 else ''} "
                f"({'; '.join(_set_label(res.tokens, s) for s in sets[:6])}{'; ...' if len(sets) > 6 else ''}).")
        label = f"head {h.head} \u00b7 {len(sets)}"
    else:
        what = f"Head {h.head} found no explanation (status {_esc(getattr(h, 'status', 'none'))})."
        label = f"head {h.head} \u00b7 none"
    shown = (f" Drawn: the target, this head's explanation tokens and their neighbours, {info['nodes']} of "
             f"{info['total_nodes']} nodes and {info['edges']} of {info['total_edges']} edges; "
             f"{hidden_n} nodes and {hidden_e} edges not shown.")
    return (f'<figure class="head" data-head="{int(h.head)}" data-label="{_esc(label)}" '
            f'data-explained="{1 if sets else 0}" data-nodes="{info["nodes"]}">'
            f'<figcaption>{what}{_esc(shown)}</figcaption>{svg}</figure>')


def _first_head(res, head) -> int | None:
    if head is not None:
        if not any(int(h.head) == int(head) for h in res.heads):
            raise ArgumentError(f"head {head} is not among the result's heads {[int(h.head) for h in res.heads]}")
        return int(head)
    chosen = next((h for h in res.heads if getattr(h, "sets", None)), res.heads[0] if res.heads else None)
    return None if chosen is None else int(chosen.head)


def explanation_fragment(res, *, head: int | None = None, max_nodes: int = MAX_NODES, method: str = "auto") -> str:
    """The report of one explanation as an HTML fragment (a ``div`` with its own CSS and JS), for
    notebooks and for :func:`explanation_html`.

    Args:
        res: a :class:`cleann.hf.TextExplanation` (or an object with its fields).
        head: the head drawn first (default: the first head with an explanation).
        max_nodes: the most nodes drawn per head.
        method: the graph layout, "auto", "graphviz" or "networkx" (see :func:`layout`).
    """
    if max_nodes < 1:
        raise ArgumentError(f"max_nodes must be at least 1, got {max_nodes}")
    scores = token_scores(res)
    first = _first_head(res, head)
    figures = "\n".join(_head_figure(res, h, scores, max_nodes, method) for h in res.heads)
    graphs = (f'<h2>Graph per head</h2><div class="head-select" role="toolbar" aria-label="head"></div>'
              f'{_legend()}\n{figures}') if res.heads else "<p>No graphs in this result.</p>"
    return (f'<div class="cleann-report" data-head="{"" if first is None else first}"><style>{_CSS}</style>'
            f'<h2>Prediction</h2>{_summary(res)}'
            f'<h2>Text</h2>{_text(res, scores)}'
            f'<h2>Explanations</h2>{_sets_table(res)}'
            f'{graphs}<script>{_JS}</script></div>')


def explanation_html(res, *, head: int | None = None, max_nodes: int = MAX_NODES, method: str = "auto") -> str:
    """A standalone HTML page (no network) of one explanation; arguments as
    :func:`explanation_fragment`."""
    title = f"cleann explanation: {res.prediction}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            '</head>'
            f'<body style="margin:1.5em auto;max-width:78em;padding:0 1em"><h1 style="font-family:system-ui,'
            f'sans-serif;font-size:1.4em">{_esc(title)}</h1>\n'
            f'{explanation_fragment(res, head=head, max_nodes=max_nodes, method=method)}\n</body></html>\n')
