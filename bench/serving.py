"""Serving latency of a RaSeRec checkpoint: what a user of a growing memory bank asks first.

    python -m bench.serving --checkpoint=<RaSeRec RAFT .pth> [--users=500] [--batch=256] [--adds=1000]

On the checkpoint's test bank (training + validation pairs, as its test used), in one process:
top-10 for one user at a time (p50 / p99 ms over ``--users`` users, each query the user's whole
history), users per second in batches of ``--batch``, each with retrieval and without it (the
same model's backbone scores alone); then the time to add ``--adds`` new <history, next item>
pairs (the test pairs: not in the bank) and the share of them a query of their own history
retrieves right after. Writes results/<dataset>-serving.md and .csv.
"""

import os
import sys
import time

import numpy as np
import torch

from bench.report import table_parser, write_report
from recbole_rag.errors import ConfigError, command, is_count
from recbole_rag.inference import history_queries, load_data_and_model

TOP_K = 10


def top_items(model, queries, retrieval):
    """Top-10 items of some queries, with the bank's retrieval or the backbone alone."""
    stage = model.stage
    model.stage = stage if retrieval else "pretrain"  # pretrain: the backbone's vector, no search
    try:
        with torch.no_grad():
            scores = model.full_sort_predict(queries)
            scores[:, 0] = -torch.inf
            return scores.topk(TOP_K).indices
    finally:
        model.stage = stage


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def latency(model, queries, users, batch, retrieval):
    """(p50 ms, p99 ms) for one user at a time, and users per second in batches."""
    top_items(model, queries[:batch], retrieval)  # an untimed pass first (allocations, faiss threads)
    single = [timed(lambda i=i: top_items(model, queries[i : i + 1], retrieval)) for i in range(users)]
    batches = [
        timed(lambda s=s: top_items(model, queries[s : s + batch], retrieval)) for s in range(0, len(queries), batch)
    ]
    p50, p99 = np.percentile(single, [50, 99]) * 1000
    return float(p50), float(p99), len(queries) / sum(batches)


def added_pairs_found(model, rows):
    """Share of added <history, next item> pairs a query of that history retrieves at once."""
    before = len(model.memory)
    timing = timed(lambda: model.add_to_memory(rows, 256))
    h = model.forward(rows[model.ITEM_SEQ], rows[model.ITEM_SEQ_LEN]).detach().float().cpu().numpy()
    ids = np.asarray(model.memory.search(h, model.retrieval_k)[3])
    own = before + np.arange(len(rows))
    return timing, float((ids == own[:, None]).any(1).mean())


def serve(checkpoint, users, batch, adds):
    config, model, dataset, _, _, test_data = load_data_and_model(checkpoint, {"show_progress": False})
    if config["model"] != "RaSeRec" or model.stage != "raft":
        raise ConfigError(f"'{checkpoint}' is not a RaSeRec RAFT checkpoint: there is no retrieval to time.")
    uids = test_data.dataset.inter_feat[config["USER_ID_FIELD"]][: max(users, batch)]
    queries = history_queries(test_data, uids.tolist()).to(config["device"])
    rows = {}
    for retrieval in (True, False):
        rows[retrieval] = latency(model, queries, min(users, len(queries)), batch, retrieval)
    new = test_data.dataset.inter_feat[:adds]  # test pairs: the bank holds training and validation pairs
    add_s, found = added_pairs_found(model, new)
    return config, len(model.memory) - len(new), rows, (len(new), add_s, found)


def main(argv=None):
    return command(lambda: _main(argv))


def _main(argv):
    parser = table_parser(__doc__)
    for action in parser._actions:
        if action.dest == "dataset":
            action.required = False
    parser.add_argument("--checkpoint", required=True, help="a RaSeRec RAFT checkpoint")
    parser.add_argument("--users", type=int, default=500, help="users timed one at a time (default 500)")
    parser.add_argument("--batch", type=int, default=256, help="users per batch (default 256)")
    parser.add_argument("--adds", type=int, default=1000, help="new pairs added to the bank (default 1000)")
    args = parser.parse_args(argv)
    for name in ("users", "batch", "adds"):
        if not is_count(getattr(args, name), 1):
            raise ConfigError(f"--{name} must be an integer >= 1, got {getattr(args, name)}.")
    if not os.path.isfile(args.checkpoint):
        raise ConfigError(f"--checkpoint '{args.checkpoint}' does not exist.")
    config, bank, rows, (added, add_s, found) = serve(args.checkpoint, args.users, args.batch, args.adds)
    header = ["retrieval", "one user p50 ms", "one user p99 ms", f"users/s (batches of {args.batch})"]
    table = [
        [label, f"{p50:.2f}", f"{p99:.2f}", f"{rate:,.0f}"]
        for label, (p50, p99, rate) in (("with (RaSeRec)", rows[True]), ("without (backbone)", rows[False]))
    ]
    csv_rows = [["with", *rows[True]], ["without", *rows[False]]]
    notes = [
        f"Checkpoint {args.checkpoint}; bank of {bank:,} pairs ({config['memory_index']}, {config['memory_metric']}), "
        f"K={config['retrieval_k']}; top-{TOP_K} over {config['dataset']}'s items, each query a user's whole history; "
        f"{args.users} users one at a time.",
        f"Adding {added:,} new <history, next item> pairs: {add_s * 1000:.0f} ms (encoding included); "
        f"{found:.1%} of them retrieved by a query of their own history right after.",
        f"Command: python -m bench.serving --checkpoint={args.checkpoint} --users={args.users} --batch={args.batch} "
        f"--adds={args.adds}",
    ]
    out = os.path.join(args.out_dir, f"{config['dataset']}-serving")
    print(write_report(out, f"Serving latency on {config['dataset']}", header, table, header, csv_rows, notes))
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
