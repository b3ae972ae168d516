"""Pictures of graphs: a self-contained SVG (and an HTML page around it) that needs no network."""

from __future__ import annotations

import html
import math

from .graph import ARROW, CIRCLE, Graph


def graph_svg(graph: Graph, labels, target: int | None = None, highlight=(), size: int = 640) -> str:
    """SVG of ``graph`` with nodes on a circle; edge ends drawn as arrowheads, circles or plain.

    Args:
        labels: one label per token index (``labels[graph.nodes[k]]`` names node k).
        target: token index drawn in red; ``highlight``: token indices drawn in orange.
    """
    k = graph.num_nodes
    c, r = size / 2, size / 2 - 70
    pos = {}
    for i, tok in enumerate(graph.nodes.tolist()):
        angle = 2 * math.pi * i / max(k, 1) - math.pi / 2
        pos[i] = (c + r * math.cos(angle), c + r * math.sin(angle))
    hl = {int(h) for h in highlight}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 {size} {size}" '
           'font-family="sans-serif" font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>']
    node_r = 16
    for a, b, at_a, at_b in graph.edges():
        (x1, y1), (x2, y2) = pos[a], pos[b]
        d = math.hypot(x2 - x1, y2 - y1) or 1.0
        ux, uy = (x2 - x1) / d, (y2 - y1) / d
        sx, sy = x1 + ux * node_r, y1 + uy * node_r
        ex, ey = x2 - ux * node_r, y2 - uy * node_r
        attrs = []
        if at_a == ARROW:
            attrs.append('marker-start="url(#arrow)"')
        if at_b == ARROW:
            attrs.append('marker-end="url(#arrow)"')
        out.append(f'<line x1="{sx:.1f}" y1="{sy:.1f}" x2="{ex:.1f}" y2="{ey:.1f}" stroke="#333" '
                   f'stroke-width="1.2" {" ".join(attrs)}/>')
        for at, (px, py), sign in ((at_a, (sx, sy), 1), (at_b, (ex, ey), -1)):
            if at == CIRCLE:
                out.append(f'<circle cx="{px + sign * ux * 4:.1f}" cy="{py + sign * uy * 4:.1f}" r="4" '
                           'fill="white" stroke="#333"/>')
    for i, tok in enumerate(graph.nodes.tolist()):
        x, y = pos[i]
        fill = "#e74c3c" if tok == target else "#f5a623" if tok in hl else "#dfe8f5"
        label = html.escape(str(labels[tok]))
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{node_r}" fill="{fill}" stroke="#333"/>')
        lx, ly = c + (r + 34) * (x - c) / r, c + (r + 34) * (y - c) / r
        out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="middle" dominant-baseline="middle">{label}</text>')
    out.append("</svg>")
    return "\n".join(out)


def report_html(title: str, sections: list[tuple[str, str]]) -> str:
    """A standalone HTML page: a title and (heading, HTML body) sections."""
    body = "\n".join(f"<h2>{html.escape(h)}</h2>\n{content}" for h, content in sections)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
            "mark.x{background:#f5a623}mark.t{background:#e74c3c;color:white}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")
