"""How much of a saved memory bank an exact search must score: the pruning that keeps the top-K
exact, measured on real keys.

    python -m bench.diagnostics search_bounds --bank=saved/bank-<run>.npz [--queries=512] [--k=20]

Queries are bank keys plus Gaussian noise (0.3 x the keys' spread). Printed: the share of keys a
per-cluster bound (q.centre + |q| radius >= the K-th best score) leaves to score, for k-means
clusterings of several sizes; the candidates a bfloat16 first pass leaves (keys within twice
its error bound, 4 * 2^-8, of the K-th best cosine); and the share of keys that are exact
duplicates (exact ties, which an exact search must break as faiss does, by id). Nothing is
asserted or written.
"""

import sys

import faiss
import numpy as np

from recbole_rag.errors import CommandParser, command

BF16_ERROR = 4 * 2.0**-8


def cluster_bound_share(keys, queries, k, n_clusters, seed=1):
    """Mean share of keys in clusters whose bound does not rule them out of the top k."""
    kmeans = faiss.Kmeans(keys.shape[1], n_clusters, niter=10, seed=seed)
    kmeans.train(keys)
    assign = kmeans.index.search(keys, 1)[1][:, 0]
    radius = np.zeros(n_clusters, np.float32)
    np.maximum.at(radius, assign, np.linalg.norm(keys - kmeans.centroids[assign], axis=1))
    kth = np.sort(queries @ keys.T, axis=1)[:, -k]
    bound = queries @ kmeans.centroids.T + np.linalg.norm(queries, axis=1, keepdims=True) * radius
    sizes = np.bincount(assign, minlength=n_clusters)
    return float(((bound >= kth[:, None]) * sizes).sum(1).mean() / len(keys))


def bf16_candidates(keys, queries, k):
    """(median, 90th percentile, max) keys within 2 * BF16_ERROR of the k-th best cosine."""
    unit = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    scores = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    kth = np.sort(scores, axis=1)[:, -k]
    counts = (scores >= kth[:, None] - 2 * BF16_ERROR).sum(1)
    return float(np.median(counts)), float(np.quantile(counts, 0.9)), int(counts.max())


def main(argv=None):
    return command(lambda: _main(argv))


def _main(argv):
    parser = CommandParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--bank", required=True, help="a bank .npz saved by MemoryBank.save")
    parser.add_argument("--queries", type=int, default=512)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--clusters", default="256,1024,4096")
    args = parser.parse_args(argv)
    from recbole_rag.errors import CheckpointError
    from recbole_rag.memory import MemoryBank

    try:
        keys = np.ascontiguousarray(MemoryBank.load(args.bank).keys, dtype=np.float32)
        clusters = [int(c) for c in args.clusters.split(",")]
    except (OSError, CheckpointError) as error:
        parser.error(f"--bank: {error}")
    except ValueError:
        parser.error(f"--clusters takes comma-separated integers, got {args.clusters!r}")
    if min(clusters) < 1:
        parser.error("--clusters must each be >= 1")
    if not 1 <= args.k < len(keys) or args.queries < 1:
        parser.error(f"--k must be in [1, {len(keys) - 1}] and --queries >= 1")
    rng = np.random.default_rng(0)
    queries = keys[rng.choice(len(keys), min(args.queries, len(keys)), replace=False)]
    queries = queries + 0.3 * keys.std() * rng.standard_normal(queries.shape).astype(np.float32)
    print(f"bank: {len(keys):,} keys of dim {keys.shape[1]}; {len(queries)} queries; top {args.k}")
    for n_clusters in clusters:
        share = cluster_bound_share(keys, queries, args.k, n_clusters)
        print(f"cluster bound, {n_clusters} clusters: {share:.0%} of the keys left to score")
    median, p90, most = bf16_candidates(keys, queries, args.k)
    print(f"bfloat16 first pass: candidates median {median:.0f}, 90th percentile {p90:.0f}, max {most}")
    distinct = len(np.unique(keys, axis=0))
    print(f"exact duplicates: {len(keys) - distinct:,} of {len(keys):,} keys ({1 - distinct / len(keys):.0%})")


if __name__ == "__main__":
    sys.exit(main())
