"""Pareto fronts for accuracy-vs-cost trade-offs: which configurations no other one beats on both axes.

`pareto_front(points, "trainable_params", "accuracy_mean")` -> indices on the front; used by summarize and the plots.
"""

from __future__ import annotations

from peftlab.report.fmt import is_num


def pareto_front(points, x_key: str, y_key: str) -> set[int]:
    """Indices of the points not dominated when minimising x and maximising y.

    j dominates i when x_j <= x_i and y_j >= y_i with at least one strict; identical points are both kept.
    Points whose x or y is missing or not finite are never on the front. O(n²), n = configurations per dataset.
    """
    pts = [(i, float(p[x_key]), float(p[y_key])) for i, p in enumerate(points) if _has(p, x_key, y_key)]
    front = set()
    for i, xi, yi in pts:
        dominated = any(xj <= xi and yj >= yi and (xj < xi or yj > yi) for _, xj, yj in pts)
        if not dominated:
            front.add(i)
    return front


def front_rows(rows: list[dict], x_key: str, y_key: str) -> set[int]:
    """The front among trained rows with a positive cost: the untrained baseline method is no trade-off.

    Indices refer to `rows`; the report's tables and plots both use this, so they mark the same points.
    """
    keep = [
        i for i, r in enumerate(rows) if r.get("trained", True) and _has(r, x_key, y_key) and r[x_key] > 0
    ]
    return {keep[j] for j in pareto_front([rows[i] for i in keep], x_key, y_key)}


def _has(point, x_key: str, y_key: str) -> bool:
    return is_num(point.get(x_key)) and is_num(point.get(y_key))
