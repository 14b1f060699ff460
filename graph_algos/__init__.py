"""graph_algos: fast, verified graph algorithms behind the five pretraining signals.

Stateless functions over a :class:`KGraph` (CSR out-adjacency of the train facts,
inverse and n-ary clique-expansion edges included), vectorised over many seeds;
numba only for per-node loops. networkx is the test/benchmark reference only.
"""

from graph_algos.graph import KGraph, role_pairs
from graph_algos.random_walk import random_walk
from graph_algos.shortest_path import bfs_distances, shortest_paths
from graph_algos.khop import khop
from graph_algos.ig_path import IGPathResult, cached_ig_paths, ig_paths
from graph_algos.clustering import degree, local_clustering, triangles

__all__ = [
    "KGraph",
    "role_pairs",
    "random_walk",
    "bfs_distances",
    "shortest_paths",
    "khop",
    "IGPathResult",
    "ig_paths",
    "cached_ig_paths",
    "degree",
    "local_clustering",
    "triangles",
]
