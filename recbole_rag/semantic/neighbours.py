"""Nearest neighbours by inner product (cosine for L2-normalised vectors) with faiss, never the
query itself: exact up to EXACT_UP_TO vectors, an inverted-file index above (SRA-CL's prefix
retrieval searches every training prefix against every other, ~10^5 on Amazon sets)."""

import faiss
import numpy as np

EXACT_UP_TO = 50_000
PROBED_CELLS = 16  # of about sqrt(n) cells, for the approximate search


def nearest_neighbours(vectors, k, exact=False):
    """(n, dim) vectors -> (n, k) row indices of each row's k nearest other rows (``exact``: an
    exact search at any size)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if not 0 < k < n:
        raise ValueError(f"need 0 < k < number of vectors, got k={k} for {n} vectors")
    if exact or n <= EXACT_UP_TO:
        index = faiss.IndexFlatIP(dim)
    else:
        cells = int(np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, cells, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = PROBED_CELLS
    index.add(vectors)
    _, found = index.search(vectors, k + 1)
    short = (found < 0).any(1)  # probed cells held fewer than k + 1 vectors: search them all
    if short.any():
        index.nprobe = index.nlist
        found[short] = index.search(vectors[short], k + 1)[1]
    others = found != np.arange(n)[:, None]
    # a row whose own id was not returned (ties) drops its last hit instead
    others[others.all(1), -1] = False
    return found[others].reshape(n, k)
