"""Nearest neighbours by inner product (cosine for L2-normalised vectors) with faiss, never the
query itself."""
import faiss
import numpy as np


def nearest_neighbours(vectors, k):
    """(n, dim) vectors -> (n, k) row indices of each row's k nearest other rows (exact search)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    if not 0 < k < n:
        raise ValueError(f"need 0 < k < number of vectors, got k={k} for {n} vectors")
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    _, found = index.search(vectors, k + 1)
    others = found != np.arange(n)[:, None]
    # a row whose own id was not returned (ties) drops its last hit instead
    others[others.all(1), -1] = False
    return found[others].reshape(n, k)
