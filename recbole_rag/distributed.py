"""Data-parallel training in several processes, on CPUs (gloo) as well as GPUs.

    python -m recbole_rag.distributed --nproc=2 --model=SASRec --dataset=ml-100k [--key=value ...]

RecBole 1.2.1 has a multi-process path (config keys ``local_rank``, ``nproc``, ``world_size``,
``offset``, ``ip``, ``port``): its dataloaders shard every split with a DistributedSampler (the
per-process batch is ``train_batch_size / world_size``), its trainer all-reduces gradients and
averages the metrics over processes, and only rank 0 saves. Two pieces of it assume GPUs, and
two modules replace exactly those, without touching RecBole's files: recbole_rag.process_group
(gloo on the CPU where RecBole's Config starts NCCL) and recbole_rag.trainer.distributed (the
DistributedDataParallel wrapper a CPU model accepts, one shared checkpoint). This module starts
the processes.

Multi-stage trainers (RaSeRecTrainer: stage files, a memory bank per process) stay one process.
"""

import os
import socket
import sys

import torch

from recbole_rag.config import Config
from recbole_rag.errors import CommandParser, ConfigError, command, is_count
from recbole_rag.overrides import parse_overrides
from recbole_rag.quick_start import run_recbole_rag
from recbole_rag.registry import OUR_TRAINERS, get_trainer
from recbole_rag.trainer.distributed import check_single_stage


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, model, dataset, config_file_list, config_dict, threads, queue):
    torch.set_num_threads(threads)
    result = run_recbole_rag(model, dataset, config_file_list, {**config_dict, "local_rank": rank})
    # every rank is done communicating before any tears the group down: a rank destroying it while
    # another is still in a collective aborts in gloo's threads ("terminate called ...")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    queue.put((rank, result))


def run_distributed(model, dataset, nproc=2, config_file_list=None, config_dict=None, port=None):
    """Train and test ``model`` data-parallel in ``nproc`` local processes; returns each rank's
    result dict (as ``run_recbole_rag``'s), rank 0 first. Metrics are averaged over processes."""
    if not is_count(nproc, 2):
        raise ConfigError(f"nproc must be an integer >= 2 for a multi-process run, got {nproc!r}.")
    config = Config(model, dataset, config_file_list, config_dict)  # a wrong setting fails here, once
    if model in OUR_TRAINERS:
        check_single_stage(get_trainer(None, model))
    # RecBole makes these folders with exists-then-makedirs, which races between processes
    for folder in (os.path.join("log", config["model"]), "log_tensorboard", config["checkpoint_dir"]):
        os.makedirs(folder, exist_ok=True)
    # One machine by default; on several, each runs this with world_size (all processes), offset
    # (its first rank) and the ip/port of the machine holding rank 0 in config_dict.
    settings = {
        "world_size": nproc,
        "offset": 0,
        "ip": "127.0.0.1",
        "port": port or free_port(),
        **(config_dict or {}),
        "nproc": nproc,
    }
    context = torch.multiprocessing.get_context("spawn")
    queue = context.SimpleQueue()
    threads = max(1, torch.get_num_threads() // nproc)
    torch.multiprocessing.spawn(
        _worker, args=(model, dataset, config_file_list, settings, threads, queue), nprocs=nproc, join=True
    )
    return [result for _, result in sorted(queue.get() for _ in range(nproc))]


def main(argv=None):
    return command(lambda: cli(argv))


def cli(argv):
    """``recbole-rag distributed ...``: raises what ``main`` prints as one line."""
    parser = CommandParser(
        prog="recbole-rag distributed",
        description="Data-parallel training in several local processes.",
        allow_abbrev=False,
        epilog="Any other --key=value overrides a setting.",
    )
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--model", "-m", default="SASRec")
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--config_files", default="")
    args, rest = parser.parse_known_args(argv)
    results = run_distributed(
        args.model, args.dataset, args.nproc, args.config_files.split() or None, parse_overrides(rest)
    )
    print(f"{args.nproc} processes, test result: {dict(results[0]['test_result'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
