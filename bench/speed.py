"""Speed, side by side in one run: our models' training and inference time as ratios to RecBole's
SASRec on the same data, batch size and seed.

    python -m bench.speed --dataset=ml-100k [--batches=20] [--eval_repeats=3] [--train_batch_size=256] \
        [--data_path=...]
    python -m bench.speed --checkpoint=RASEREC.pth [--eval_repeats=5] [--data_path=...]

Each model is measured in its own child process (so its peak memory is its own): training
seconds per batch (median of ``--batches`` after one warm-up batch) and per epoch (x number of
batches); for RaSeRec also the memory-bank build, the one-off neighbour retrieval of every
training pair, a RAFT step, the faiss search a RAFT step would need without that cache (the
retrieval overhead per batch), and full-ranking test inference per 1,000 users with and without
retrieval (median of ``--eval_repeats`` whole test passes after an untimed one), over the
configured bank (exact by default) and over the one ``memory_index: auto`` builds. Writes
``results/<dataset>-speed.md`` and ``.csv``. Timings only: nothing is asserted.

With ``--checkpoint`` (a trained RaSeRec): its test pass three ways in one process, timed in
alternating rounds: the backbone alone (retrieval off), retrieval over the bank ``memory_index:
auto`` builds, and over an exact (flat) one; each with RecBole's six test metrics and the paired
test of the auto bank against the exact one over the same users. Writes
``results/<dataset>-inference.md`` and ``.csv``.
"""

import itertools
import multiprocessing
import os
import queue
import resource
import sys
import time

import numpy as np
import torch

from bench.accuracy import METRICS
from bench.report import write_report
from recbole_rag.errors import CommandParser, RecBoleRagError, command
from recbole_rag.memory import MemoryBank


def rss_mib():
    """Resident memory of this process now (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def median_time(step, batches, data, clock=time.perf_counter):
    """Median seconds of ``step(batch)`` over ``batches`` batches, after one warm-up batch; the
    timing helper of every bench script (``clock``: wall, or the process's CPU time)."""
    times = []
    for i, batch in enumerate(data):
        if i > batches:
            break
        start = clock()
        step(batch)
        if i > 0:
            times.append(clock() - start)
    return float(np.median(times))


def train_step(model, optimizer, amp=False):
    """One training step as RecBole's trainer takes it (autocast when ``enable_amp``: bfloat16
    on CPU)."""
    device = next(model.parameters()).device.type

    def step(batch):
        optimizer.zero_grad()
        with torch.autocast(device_type=device, enabled=amp):
            loss = model.calculate_loss(batch)
        loss.backward()
        optimizer.step()

    return step


def setup(model_name, dataset, common):
    """Config, dataloaders, model and trainer as run_recbole_rag builds them."""
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from recbole_rag import Config, get_trainer
    from recbole_rag.data import load_dataset
    from recbole_rag.registry import model_class
    from recbole_rag.runtime import tune_cpu

    config = Config(model_name, dataset, config_dict=common)
    if config["cpu_tuning"]:  # as the run path does, for RecBole's SASRec too
        tune_cpu()
    init_seed(config["seed"], True)
    train, valid, test = data_preparation(config, load_dataset(config))
    model = model_class(config)(config, train.dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    return config, model, trainer, train, test


def inference_per_1000_users(trainer, test, repeats=3, clock=time.perf_counter):
    """Seconds per 1,000 test users of a whole test evaluation: the median of ``repeats`` timed
    passes after an untimed one (the first pass pays one-off allocations and warm-up)."""
    whole_test = median_time(
        lambda _: trainer.evaluate(test, load_best_model=False), repeats, itertools.repeat(None), clock
    )
    return whole_test / len(test.dataset) * 1000


def measure(model_name, dataset, common, batches, eval_repeats=3):
    """Timings of one model (run in a child process); RaSeRec adds its stage-2 numbers."""
    config, model, trainer, train, test = setup(model_name, dataset, common)
    rows = {"n_batches": len(train), "users": len(test.dataset), "rss_after_data_mib": rss_mib()}
    model.train()
    rows["train_s_per_batch"] = median_time(train_step(model, trainer.optimizer), batches, train)
    rows["infer_s_per_1000_users"] = inference_per_1000_users(trainer, test, eval_repeats)
    if model_name == "RaSeRec":
        start = time.perf_counter()
        trainer.build_memory(train.dataset, show_progress=False)
        rows["bank_build_s"] = time.perf_counter() - start
        rows["bank_entries"] = len(model.memory)
        model.start_raft()
        start = time.perf_counter()
        model.cache_training_neighbours(trainer.entry_stop)
        rows["neighbour_cache_s"] = time.perf_counter() - start
        optimizer = trainer._build_optimizer(
            params=[p for p in model.parameters() if p.requires_grad], learning_rate=config["raft_learning_rate"]
        )
        model.train()
        rows["raft_s_per_batch"] = median_time(train_step(model, optimizer), batches, train)

        def search(batch):  # what a RAFT step searches when neighbours are not cached
            entries = batch["memory_id"].numpy()
            exclude = np.stack([entries, batch["memory_stop"].numpy()], 1)
            model.memory.search(model.memory.entries(entries)[0], model.retrieval_k, exclude)

        rows["retrieval_s_per_batch"] = median_time(search, batches, train)
        rows["bank"] = describe_bank(model.memory)
        rows["raft_infer_s_per_1000_users"] = inference_per_1000_users(trainer, test, eval_repeats)
        configured = model.memory  # the same pairs in the bank memory_index: auto builds
        model.memory = MemoryBank(configured.dim, "auto", configured.metric)
        model.memory.add(configured.keys, configured.values)
        rows["auto_bank"] = describe_bank(model.memory)
        rows["raft_auto_infer_s_per_1000_users"] = inference_per_1000_users(trainer, test, eval_repeats)
        model.memory = configured
    rows["peak_rss_mib"] = peak_rss_mib()
    return rows


def _child(answers, *args):
    import recbole_rag  # noqa: F401  (compat shims before RecBole)

    try:
        answers.put((None, measure(*args)))
    except RecBoleRagError as error:  # the user's to fix: shown as one line by the parent
        answers.put((error, None))


def measure_in_child(*args, target=_child):
    """``measure(*args)`` in a fresh process (its own peak memory); the child's error raised
    here, and a child that dies without an answer (killed, out of memory) an error, not a hang."""
    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    process = context.Process(target=target, args=(answers, *args))
    process.start()
    while True:
        try:
            error, rows = answers.get(timeout=1.0)
            break
        except queue.Empty:
            if not process.is_alive() and answers.empty():
                raise RecBoleRagError(
                    f"the measuring process for {args[0]} ended (exit code {process.exitcode}) with no result."
                ) from None
    process.join()
    if error is not None:
        raise error
    return rows


MODELS = [("SASRec (RecBole)", "SASRec"), ("DuoRec", "DuoRec"), ("RaSeRec", "RaSeRec")]


def report_rows(measured):
    """(label, s/batch, s/epoch, ratio to SASRec, s per 1,000 users, its ratio, peak MiB) rows."""
    base = measured["SASRec (RecBole)"]
    rows = []

    def add(label, per_batch, n_batches, infer, peak, note=""):
        train_ratio = per_batch / base["train_s_per_batch"] if per_batch else None
        infer_ratio = infer / base["infer_s_per_1000_users"] if infer else None
        rows.append(
            [
                label,
                per_batch,
                per_batch * n_batches if per_batch else None,
                train_ratio,
                infer,
                infer_ratio,
                peak,
                note,
            ]
        )

    for label, rows_of in measured.items():
        stage1 = "RaSeRec stage 1 (DuoRec objective)" if label == "RaSeRec" else label
        add(
            stage1,
            rows_of["train_s_per_batch"],
            rows_of["n_batches"],
            rows_of["infer_s_per_1000_users"],
            rows_of["peak_rss_mib"],
            "inference without retrieval" if label == "RaSeRec" else "",
        )
    r = measured["RaSeRec"]
    backbone = r["infer_s_per_1000_users"]  # the same encoder's inference without retrieval
    add(
        "RaSeRec stage 2 (RAFT, neighbours cached)",
        r["raft_s_per_batch"],
        r["n_batches"],
        r["raft_infer_s_per_1000_users"],
        r["peak_rss_mib"],
        f"inference with retrieval over the configured bank ({r['bank']}): "
        f"{r['raft_infer_s_per_1000_users'] / backbone:.2f}x the backbone's inference",
    )
    add(
        f"RaSeRec stage 2, memory_index auto ({r['auto_bank']})",
        None,
        r["n_batches"],
        r["raft_auto_infer_s_per_1000_users"],
        None,
        f"{r['raft_auto_infer_s_per_1000_users'] / backbone:.2f}x the backbone's inference",
    )
    add(
        "RAFT retrieval per batch if searched (faiss)",
        r["retrieval_s_per_batch"],
        r["n_batches"],
        None,
        None,
        f"{r['retrieval_s_per_batch'] / r['raft_s_per_batch']:.2f}x a cached RAFT step",
    )
    return rows


def describe_bank(bank):
    """``ivf (nlist 1024, nprobe 16)`` or ``flat``: the index a bank became."""
    if bank.index_type == "ivf":
        return f"ivf (nlist {bank.params['nlist']}, nprobe {bank.params['nprobe']})"
    return bank.index_type


# The checkpoint mode's three ways of running one test pass: retrieval off, over the bank
# memory_index: auto builds, over an exact one.
VARIANTS = ("backbone alone", "auto bank", "exact bank")


def measure_checkpoint(checkpoint, repeats, data_path=None, clock=time.perf_counter):
    """{variant: (test result, per-user values, seconds per 1,000 users)} of a RaSeRec RAFT
    checkpoint and the auto bank's description; timed in ``repeats`` alternating rounds
    after an untimed pass of each, so drift in the machine's load falls on all three alike."""
    from recbole_rag import get_trainer
    from recbole_rag.inference import load_data_and_model
    from recbole_rag.significance import capture_per_user
    from recbole_rag.trainer.raserec_trainer import restore_test_memory

    overrides = {"memory_backend": "faiss", "show_progress": False, **({"data_path": data_path} if data_path else {})}
    config, model, dataset, train, valid, test = load_data_and_model(checkpoint, overrides)
    if config["model"] != "RaSeRec" or model.stage != "raft":
        raise RecBoleRagError(f"--checkpoint wants a RaSeRec checkpoint of RAFT (stage 2); '{checkpoint}' is not one.")
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    banks = {"backbone alone": None}
    for variant, index in (("exact bank", "flat"), ("auto bank", "auto")):  # each as a run with it builds it
        model.memory, model.memory_file = None, None
        config["memory_index"], config["memory_nlist"], config["memory_nprobe"] = index, None, None
        restore_test_memory(model, config, train.dataset, valid.dataset)
        banks[variant] = model.memory
    exact = banks["exact bank"]

    def use(variant):
        model.stage = "pretrain" if banks[variant] is None else "raft"  # pretrain: the encoder alone
        model.memory = exact if banks[variant] is None else banks[variant]

    out, times = {}, {v: [] for v in VARIANTS}
    for variant in VARIANTS:
        use(variant)
        users = {}
        with capture_per_user(trainer, dataset, users):
            result = dict(trainer.evaluate(test, load_best_model=False))
        out[variant] = [result, users]
    for _ in range(repeats):
        for variant in VARIANTS:
            use(variant)
            start = clock()
            trainer.evaluate(test, load_best_model=False)
            times[variant].append(clock() - start)
    for variant in VARIANTS:
        out[variant].append(float(np.median(times[variant])) / len(test.dataset) * 1000)
    return out, describe_bank(banks["auto bank"]), len(exact), config["dataset"]


def inference_rows(measured):
    """Rows of the checkpoint mode's table: time, ratio, the six metrics, and the auto
    bank's largest metric difference and paired p-values against the exact bank."""
    from recbole_rag.significance import compare_runs

    backbone = measured["backbone alone"][2]
    exact_result, exact_users = measured["exact bank"][:2]
    rows = []
    for variant in VARIANTS:
        result, users, seconds = measured[variant]
        row = [variant, seconds, seconds / backbone, *(result[m] for m in METRICS)]
        if variant == "auto bank":
            tests = {t.metric: t for t in compare_runs(exact_users, users, METRICS)}
            largest = max(METRICS, key=lambda m: abs(result[m] - exact_result[m]))
            row += [(result[largest] - exact_result[largest], tests[largest]), tests["ndcg@10"], tests["recall@10"]]
        else:
            row += [None, None, None]
        rows.append(row)
    return rows


def _p(test):
    """A paired test's p-value as the table shows it."""
    from recbole_rag.significance import format_p

    if test is None:
        return ""
    return "identical" if test.identical else format_p(test.p_t)


def _p_value(test):
    return None if test is None else 1.0 if test.identical else test.p_t


def _largest(difference):
    """``+0.00080 (R@20, p 0.21)``: the auto bank's largest metric difference from exact."""
    if difference is None:
        return ""
    value, test = difference
    name = test.metric.replace("recall", "R").replace("ndcg", "N")
    return f"{value:+.5f} ({name}, p {_p(test)})"


def report_inference(args):
    measured, bank, entries, dataset = measure_checkpoint(args.checkpoint, args.eval_repeats, args.data_path)
    rows = inference_rows(measured)
    header = [
        "test pass",
        "s per 1,000 users",
        "ratio to the backbone",
        *(m.replace("recall", "R").replace("ndcg", "N") for m in METRICS),
        "largest difference from exact",
        "N@10 vs exact p",
        "R@10 vs exact p",
    ]
    shown = [
        [label, _fmt(s), _fmt(r, 2), *(_fmt(v, 4) for v in metrics), _largest(d), _p(pn), _p(pr)]
        for label, s, r, *metrics, d, pn, pr in rows
    ]
    csv_header = [h.replace(" ", "_").replace(",", "") for h in header]
    csv_rows = [[*row[:-3], None if row[-3] is None else row[-3][0], *(_p_value(t) for t in row[-2:])] for row in rows]
    notes = [
        f"Checkpoint {args.checkpoint}; its test bank of {entries:,} pairs (training + validation); auto bank: "
        f"{bank} (memory_index auto); exact bank: flat. {len(measured['exact bank'][1]['user']):,} test users, "
        f"median of {args.eval_repeats} passes each, the three alternating, after an untimed one.",
        "p: paired t-test of the auto bank against the exact one over the same test users "
        "(identical: every user's value equal); the largest difference is over the six metrics, with its own p.",
        f"Command: python -m bench.speed --checkpoint={args.checkpoint} --eval_repeats={args.eval_repeats}",
    ]
    table = write_report(
        os.path.join(args.out_dir, f"{dataset}-inference"),
        f"Inference with and without retrieval on {dataset}",
        header,
        shown,
        csv_header,
        csv_rows,
        notes,
    )
    print(table + "\n\n" + "\n".join(notes))
    return 0


def _fmt(value, digits=3):
    return "" if value is None else f"{value:.{digits}f}"


def main(argv=None):
    return command(lambda: _main(argv))


def _main(argv):
    parser = CommandParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--eval_repeats", type=int, default=3)
    parser.add_argument("--train_batch_size", type=int, default=256)
    parser.add_argument("--out_dir", default="results")
    parser.add_argument("--checkpoint", default=None, help="a RaSeRec RAFT checkpoint: time its test pass three ways")
    args = parser.parse_args(argv)
    if min(args.batches, args.eval_repeats, args.train_batch_size) < 1:
        parser.error("--batches, --eval_repeats and --train_batch_size must be >= 1")
    if args.checkpoint:
        return report_inference(args)
    return measure_all(args)


def measure_all(args):
    common = {"train_batch_size": args.train_batch_size, "show_progress": False, "state": "ERROR"}
    if args.data_path:
        common["data_path"] = args.data_path
    measured = {}
    for label, model_name in MODELS:
        measured[label] = measure_in_child(model_name, args.dataset, common, args.batches, args.eval_repeats)
        print(f"{label}: {measured[label]}", flush=True)
    rows = report_rows(measured)
    header = [
        "model / stage",
        "train s/batch",
        "est. s/epoch",
        "train ratio to SASRec",
        "test s per 1,000 users",
        "inference ratio to SASRec",
        "peak RSS MiB",
        "note",
    ]
    shown = [
        [label, _fmt(b, 4), _fmt(e, 1), _fmt(t, 2), _fmt(i), _fmt(ir, 2), _fmt(p, 0), note]
        for label, b, e, t, i, ir, p, note in rows
    ]
    r = measured["RaSeRec"]
    notes = [
        f"batch {args.train_batch_size}, median of {args.batches} batches, {r['n_batches']} batches per epoch, "
        f"{r['users']} test users, inference the median of {args.eval_repeats} test passes after a warm-up one; "
        f"each model in its own process (peak RSS includes the loaded dataset, "
        f"{measured['SASRec (RecBole)']['rss_after_data_mib']:.0f} MiB after loading for SASRec).",
        f"RaSeRec memory bank: {r['bank_entries']} entries built in {r['bank_build_s']:.2f} s (encode + faiss add); "
        f"top-K neighbours of every training pair retrieved once in {r['neighbour_cache_s']:.2f} s.",
    ]
    table = write_report(
        os.path.join(args.out_dir, f"{args.dataset}-speed"),
        f"Speed on {args.dataset}",
        header,
        shown,
        header,
        rows,
        notes,
    )
    print(table + "\n\n" + "\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
