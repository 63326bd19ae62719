"""faiss's BLAS switch on a saved memory bank: top-K searches of the bank's own keys, in batches
as RAFT's neighbour retrieval makes them, under faiss's default switch and under the bank's,
timed, and whether both give each query the same neighbours.

    python -m bench.diagnostics faiss_blas --bank=saved/bank-<run>.npz [--k=20] [--batch=1024]

faiss scores a batch with one BLAS matrix product only when queries x dim reaches
``distance_compute_blas_threshold`` (128,000 in faiss 1.15), else query by query;
recbole_rag/memory/bank.py lowers it to BLAS_THRESHOLD. Nothing is asserted or written.
"""

import time

import faiss
import numpy as np

from recbole_rag.errors import CommandParser, command

FAISS_DEFAULT = 128_000  # faiss 1.15's distance_compute_blas_threshold


def search_all(bank, queries, k, batch, threshold):
    """(ids (n, k), seconds) of every query's top-k, searched ``batch`` at a time."""
    faiss.cvar.distance_compute_blas_threshold = threshold
    start = time.perf_counter()
    ids = [bank.search(queries[s : s + batch], k)[3] for s in range(0, len(queries), batch)]
    return np.concatenate(ids), time.perf_counter() - start


def main(argv=None):
    return command(lambda: _main(argv))


def _main(argv):
    parser = CommandParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--bank", required=True, help="a bank .npz saved by MemoryBank.save")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args(argv)
    from recbole_rag.errors import CheckpointError
    from recbole_rag.memory import MemoryBank
    from recbole_rag.memory.bank import BLAS_THRESHOLD

    try:
        bank = MemoryBank.load(args.bank)
    except (OSError, CheckpointError) as error:
        parser.error(f"--bank: {error}")
    if not 1 <= args.k <= len(bank) or args.batch < 1:
        parser.error(f"--k must be in [1, {len(bank)}] and --batch >= 1")
    queries = bank.entries(np.arange(len(bank)))[0]
    before = faiss.cvar.distance_compute_blas_threshold
    try:
        default_ids, default_s = search_all(bank, queries, args.k, args.batch, FAISS_DEFAULT)
        ours_ids, ours_s = search_all(bank, queries, args.k, args.batch, BLAS_THRESHOLD)
    finally:
        faiss.cvar.distance_compute_blas_threshold = before
    same_set = (np.sort(default_ids, axis=1) == np.sort(ours_ids, axis=1)).all(1).mean()
    print(f"bank: {len(bank):,} keys of dim {bank.dim} ({bank.index_type}, {bank.metric}); top {args.k}")
    print(f"faiss's default switch ({FAISS_DEFAULT:,}): {default_s:.2f} s")
    print(f"the bank's switch ({BLAS_THRESHOLD}): {ours_s:.2f} s ({default_s / ours_s:.1f}x faster)")
    print(f"same neighbour set: {same_set:.2%} of {len(queries):,} queries")


if __name__ == "__main__":
    main()
