"""Training time per batch: the plug-in's models vs RecBole's SASRec, side by side in one run.

    python -m bench.epoch_time --dataset=ml-100k [--variants=encoder|sracl] [--batches=30] \
        [--rounds=3] [--data_path=...] [--clock=cpu] [--out_dir=results]

Same data, batch size and seed for every model, in one process with the run path's CPU tuning
(recbole_rag/runtime.py); prints seconds per batch, the estimated epoch time and the ratio to
RecBole's SASRec, and writes <out_dir>/<dataset>-epoch-time[-sracl].md. Every model is built once
and timed in ``--rounds`` interleaved rounds (each round times all of them in turn); a row reports
the median over rounds, and its ratio is the median of the per-round ratios, so a slow spell of the
machine moves the baseline and the model it is compared with together. ``--variants=sracl`` times
SRA-CL's cross-sequence modes (per-epoch memory table vs neighbours encoded every step) and the
sracl-authors preset; their semantic vectors come from the item file's categorical fields (what a
step costs does not depend on where the vectors came from), and a memory mode's once-per-epoch
table refresh is added to its epoch estimate. ``--clock=cpu`` times the process's CPU seconds
instead of wall seconds: steadier on a machine shared with other work (run it with
OMP_NUM_THREADS=1 so idle threads' spinning is not counted).
"""

import functools
import os
import sys
import time

import numpy as np
import torch
from recbole.data import data_preparation
from recbole.utils import init_seed

from bench.accuracy import preset
from bench.report import write_report
from bench.speed import median_time, train_step
from recbole_rag import Config, get_trainer
from recbole_rag.data import load_dataset
from recbole_rag.errors import CommandParser, command
from recbole_rag.registry import model_class
from recbole_rag.runtime import tune_cpu

# SRA-CL's semantic vectors from the item file's categories: no sentence model to load
CATEGORICAL_SEMANTICS = {"semantic_source": "categorical", "user_semantics": "items"}
_PRESET = {
    **preset("sracl-authors"),
    **CATEGORICAL_SEMANTICS,
    "semantic_text_fields": None,
    "item_text_histories": 0,
    "prefix_semantics": "items",
}
VARIANTS = {
    "encoder": [
        ("SASRec (RecBole)", "SASRec", {}),
        ("DuoRec contrast=none (our encoder = SASRec)", "DuoRec", {"contrast": "none"}),
        ("DuoRec", "DuoRec", {}),
        # RecBole's own mixed precision (torch.autocast: bfloat16 matmuls and element-wise ops on CPU)
        ("DuoRec, enable_amp (bfloat16)", "DuoRec", {"enable_amp": True}),
    ],
    "sracl": [
        ("SASRec (RecBole)", "SASRec", {}),
        ("SRA-CL off (the backbone)", "SRACL", {**CATEGORICAL_SEMANTICS, "cross_weight": 0, "intra_weight": 0}),
        ("SRA-CL defaults (cross_view memory)", "SRACL", CATEGORICAL_SEMANTICS),
        ("SRA-CL cross_view encode", "SRACL", {**CATEGORICAL_SEMANTICS, "cross_view": "encode"}),
        ("SRA-CL preset sracl-authors (length 20)", "SRACL", _PRESET),
    ],
}


def build_step(model_name, overrides, dataset, common):
    """One model's training step and loader as the run path builds them, plus the once-per-epoch
    work outside the steps (SRA-CL's memory table refresh, done once here), or None."""
    config = Config(model_name, dataset, config_dict={**common, **overrides})
    init_seed(config["seed"], True)
    train_data, _, _ = data_preparation(config, load_dataset(config))
    model = model_class(config)(config, train_data.dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    per_epoch = None
    if hasattr(trainer, "prepare_semantics"):  # SRA-CL: neighbour tables once, before training
        trainer.prepare_semantics(train_data.dataset)
        trainer.optimizer = trainer._build_optimizer()
        if model.cross_weight and model.cross_view == "memory":  # the table the steps read
            per_epoch = functools.partial(model.refresh_memory, config["eval_batch_size"])
            per_epoch()
    model.train()
    return train_step(model, trainer.optimizer, config["enable_amp"]), train_data, per_epoch


def time_rounds(built, batches, rounds, clock=time.perf_counter):
    """Per model: median seconds per batch over ``rounds`` interleaved rounds, the median of its
    per-round ratios to the first model, and the per-epoch extra (median over rounds)."""
    per_batch = [[] for _ in built]
    extra = [[] for _ in built]
    for _ in range(rounds):
        for i, (step, data, per_epoch) in enumerate(built):
            per_batch[i].append(median_time(step, batches, data, clock))
            if per_epoch is not None:
                start = clock()
                per_epoch()
                extra[i].append(clock() - start)
    base = per_batch[0]
    return [
        (
            float(np.median(times)),
            float(np.median([t / b for t, b in zip(times, base)])),
            float(np.median(extras)) if extras else 0.0,
        )
        for times, extras in zip(per_batch, extra)
    ]


def main(argv=None):
    return command(lambda: _main(argv))


def _main(argv):
    parser = CommandParser()
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default="dataset/")
    parser.add_argument("--variants", choices=sorted(VARIANTS), default="encoder")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train_batch_size", type=int, default=256)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--out_dir", default="results")
    args = parser.parse_args(argv)
    if min(args.batches, args.rounds, args.train_batch_size) < 1:
        parser.error("--batches, --rounds and --train_batch_size must be >= 1")
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    tuning = tune_cpu()
    common = {
        "data_path": args.data_path,
        "train_batch_size": args.train_batch_size,
        "show_progress": False,
        "state": "ERROR",
    }
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, anomaly detection "
        f"{torch.is_anomaly_enabled()}, {args.clock} clock, CPU tuning {tuning}"
    )
    variants = VARIANTS[args.variants]
    built = [build_step(name, overrides, args.dataset, common) for _, name, overrides in variants]
    rows = []
    for (label, _, _), (_, data, _), (per_batch, ratio, extra) in zip(
        variants, built, time_rounds(built, args.batches, args.rounds, clock)
    ):
        per_epoch = per_batch * len(data) + extra
        rows.append((label, per_batch, per_epoch, len(data), ratio))
        print(
            f"{label:45s} {per_batch:.3f} s/batch  ~{per_epoch:.0f} s/epoch ({len(data)} batches)  "
            f"ratio to RecBole SASRec {ratio:.2f}",
            flush=True,
        )
    suffix = "" if args.variants == "encoder" else f"-{args.variants}"
    base = os.path.join(args.out_dir, f"{args.dataset}-epoch-time{suffix}")
    command = (
        f"python -m bench.epoch_time --dataset={args.dataset} --variants={args.variants} "
        f"--batches={args.batches} --rounds={args.rounds}"
    )
    write_report(
        base,
        f"Training time per batch on {args.dataset} (batch {args.train_batch_size}, median of {args.batches} "
        f"batches, median of {args.rounds} interleaved rounds, {args.clock} clock)",
        ["model", "s/batch", "est. s/epoch", "ratio to RecBole SASRec"],
        [(label, f"{b:.3f}", f"{e:.0f}", f"{r:.2f}") for label, b, e, _, r in rows],
        csv_header=["model", "s_per_batch", "s_per_epoch", "batches_per_epoch", "ratio"],
        csv_rows=rows,
        notes=[f"`{command}`"],
    )
    print(f"written to {base}.md and .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
