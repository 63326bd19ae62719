"""One epoch of every model, and one RAFT epoch, on whatever device torch sees, with per-epoch
times: the check that the GPU path runs (bench/gpu_smoke.sh carries it to a GPU machine).

    python -m bench.gpu_smoke --dataset=amazon-beauty --data_path=DATA_PATH [--out_dir=results-gpu]

Writes <out_dir>/<dataset>-smoke.md and .csv. A model that fails is a row with its error, and
the script exits 1 after the others ran, so one call shows everything that breaks.
"""

import os
import sys
import time
import traceback

import torch

from bench.accuracy import preset
from bench.epoch_time import CATEGORICAL_SEMANTICS
from bench.report import machine, table_parser, write_report
from recbole_rag import run_recbole_rag
from recbole_rag.errors import command
from recbole_rag.overrides import parse_overrides

# (label, model, overrides): every model and the settings whose code paths differ on a device.
RUNS = [
    ("SASRec (RecBole)", "SASRec", {}),
    ("GRU4Rec (RecBole)", "GRU4Rec", {}),
    ("DuoRec", "DuoRec", {}),
    ("RaSeRec: stage 1 + one RAFT epoch (frozen backbone, cached neighbours)", "RaSeRec", {}),
    ("RaSeRec, backbone fine-tuned (a bank search every step)", "RaSeRec", {"freeze_backbone": False}),
    ("SRA-CL, defaults", "SRACL", CATEGORICAL_SEMANTICS),
    ("SRA-CL, cross_view encode", "SRACL", {**CATEGORICAL_SEMANTICS, "cross_view": "encode"}),
    ("Regenerator (DR4SR)", "Regenerator", {"regen_data_path": None}),
    ("SASRec with DR4SR+'s personaliser", "SASRec", {**preset("dr4sr-plus"), "personalise_warmup_epochs": 0}),
]


def smoke(dataset, common, runs=RUNS, log=print):
    """Run each row for one epoch; returns [(label, device, seconds per epoch, test NDCG@10 or error)]."""
    rows = []
    for label, model, overrides in runs:
        start = time.perf_counter()
        try:
            result = run_recbole_rag(model, dataset, config_dict={**common, **overrides})
            epochs = max(result["epochs_run"] or 1, 1)
            outcome = f"{result['test_result'].get('ndcg@10', float('nan')):.4f}"
            per_epoch = f"{result['train_time_s'] / epochs:.1f}"
        except Exception as err:  # noqa: BLE001 -- a failing model is a row, the others still run
            traceback.print_exc()
            outcome, per_epoch = f"FAILED: {type(err).__name__}: {str(err).splitlines()[0][:160]}", "-"
        rows.append((label, per_epoch, f"{time.perf_counter() - start:.1f}", outcome))
        log(" | ".join(rows[-1]), flush=True)
    return rows


def main(argv=None):
    return command(lambda: run_smoke(*table_parser(__doc__).parse_known_args(argv)))


def run_smoke(args, rest):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    common = {
        "epochs": 1,
        "raft_epochs": 1,
        "show_progress": False,
        "state": "ERROR",
        "checkpoint_dir": os.path.join(args.out_dir, "smoke-saved"),
        **({"data_path": args.data_path} if args.data_path else {}),
        **parse_overrides(rest),
    }
    print(machine(), f"device {device}")
    rows = smoke(args.dataset, common)
    header = ["run", "s per epoch", "wall s (data, build, test included)", "test NDCG@10"]
    write_report(
        os.path.join(args.out_dir, f"{args.dataset}-smoke"),
        f"One epoch of every model on {args.dataset}, {device}",
        header,
        rows,
        notes=[f"`python -m bench.gpu_smoke --dataset={args.dataset}`"],
    )
    print(f"written to {args.out_dir}/{args.dataset}-smoke.md and .csv")
    return 1 if any(row[3].startswith("FAILED") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
