"""Union-find over integer document indices.

Paper: WanJuan-CC, arXiv 2402.19282, stage 3 (duplicate clusters); docs/papers.md §4.

Vectorised pointer jumping: `parent[i] = min label of i's component`, found by repeatedly taking
the minimum over edges and then over parents until nothing changes. Each round is a few numpy
passes over the edges, and the number of rounds grows with the log of the component diameter, so
millions of edges take seconds with no Python loop per edge.
"""

from __future__ import annotations

import numpy as np


def connected_components(n: int, edges: np.ndarray) -> np.ndarray:
    """Component label (the smallest member index) of each of n nodes; edges is (m, 2) int64."""
    label = np.arange(n, dtype=np.int64)
    if edges.size == 0:
        return label
    u, v = edges[:, 0].astype(np.int64), edges[:, 1].astype(np.int64)
    while True:
        lu, lv = label[u], label[v]
        low = np.minimum(lu, lv)
        new = label.copy()
        np.minimum.at(new, lu, low)   # hook each root onto the smaller label across an edge
        np.minimum.at(new, lv, low)
        while True:                   # pointer jumping: label <- label[label] until stable
            jumped = new[new]
            if np.array_equal(jumped, new):
                break
            new = jumped
        new = np.minimum(new, new[label])
        if np.array_equal(new, label):
            return label
        label = new
