"""Data-parallel training in several processes, on CPUs (gloo) as well as GPUs.

    python -m recbole_rag.distributed --nproc=2 --model=SASRec --dataset=ml-100k [--key=value ...]

RecBole 1.2.1 has a multi-process path (config keys ``local_rank``, ``nproc``, ``world_size``,
``offset``, ``ip``, ``port``): its dataloaders shard every split with a DistributedSampler (the
per-process batch is ``train_batch_size / world_size``), its trainer all-reduces gradients and
averages the metrics over processes, and only rank 0 saves. Two pieces of it assume GPUs, and
this module replaces exactly those, without touching RecBole's files:

- ``Config._init_device`` starts NCCL on a CUDA device: our Config calls
  ``init_cpu_process_group`` instead when there is no GPU (gloo, device ``cpu``).
- ``AbstractTrainer`` wraps the model as ``DistributedDataParallel(device_ids=[rank])``, which a
  CPU model refuses: ``distributed_trainer`` builds that wrapper itself (``device_ids`` only on a
  GPU), gives every rank rank 0's checkpoint name, and waits after ``fit`` until rank 0 has
  written the best checkpoint, so every rank tests the same model.

Multi-stage trainers (RaSeRecTrainer: stage files, a memory bank per process) stay one process.
"""

import argparse
import os
import socket
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from recbole_rag.errors import ConfigError, RecBoleRagError

MULTI_PROCESS_KEYS = ("world_size", "ip", "port")


def uses_gpu(config_dict):
    return torch.cuda.is_available() and str(config_dict.get("gpu_id", "")) != ""


def init_cpu_process_group(config_dict):
    """What RecBole's ``Config._init_device`` does for ``local_rank``, with gloo on the CPU."""
    missing = [key for key in MULTI_PROCESS_KEYS if config_dict.get(key) in (None, -1)]
    if missing:
        raise ConfigError(
            f"local_rank is set, so this is one of several processes, but {', '.join(missing)} "
            "is not: start them with recbole_rag.distributed.run_distributed (or set world_size, "
            "ip and port)."
        )
    rank = config_dict["local_rank"] + config_dict.get("offset", 0)
    dist.init_process_group(
        "gloo",
        rank=rank,
        world_size=config_dict["world_size"],
        init_method=f"tcp://{config_dict['ip']}:{config_dict['port']}",
    )
    config_dict.update(device=torch.device("cpu"), single_spec=False)
    if config_dict["local_rank"] != 0:  # as RecBole: only rank 0 logs and shows progress
        config_dict.update(state="error", show_progress=False, verbose=False)


def check_single_stage(trainer_class):
    from recbole.trainer import Trainer as RecBoleTrainer

    from recbole_rag.trainer.safe_checkpoint import SafeCheckpointMixin

    if trainer_class.fit not in (RecBoleTrainer.fit, SafeCheckpointMixin.fit):
        raise ConfigError(
            f"{trainer_class.__name__} trains in several stages, which run in one process only; "
            "drop nproc / local_rank for this model."
        )


def distributed_trainer(trainer_class):
    """``trainer_class`` for one of several processes: DDP-wrapped model, shared checkpoint."""
    check_single_stage(trainer_class)

    class DistributedTrainer(trainer_class):
        def __init__(self, config, model):
            config["single_spec"] = True  # RecBole's own wrapper passes device_ids, GPU only
            try:
                super().__init__(config, model)
            finally:
                config["single_spec"] = False
            device_ids = [config["local_rank"]] if config["device"].type == "cuda" else None
            self.distributed_model = DistributedDataParallel(self.model, device_ids=device_ids)
            names = [self.saved_model_file]
            dist.broadcast_object_list(names, src=0)
            self.saved_model_file = names[0]

        def fit(self, *args, **kwargs):
            result = super().fit(*args, **kwargs)
            dist.barrier()  # rank 0 has saved the best checkpoint before any rank tests it
            names = [self.saved_model_file]  # under the name rank 0 claimed when saving
            dist.broadcast_object_list(names, src=0)
            self.saved_model_file = names[0]
            check_replicas_agree(self.model)
            return result

    DistributedTrainer.__name__ = trainer_class.__name__
    return DistributedTrainer


def check_replicas_agree(model):
    """Data-parallel replicas must hold the same weights; they differ if gradients were not
    all-reduced (each process sees other batches and other dropout)."""
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    if not all(torch.allclose(g, gathered[0], rtol=1e-9, atol=1e-9) for g in gathered):
        raise RuntimeError(f"data-parallel replicas diverged (weight sums {[g.item() for g in gathered]})")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, model, dataset, config_file_list, config_dict, threads, queue):
    from recbole_rag.quick_start import run_recbole_rag

    torch.set_num_threads(threads)
    result = run_recbole_rag(model, dataset, config_file_list, {**config_dict, "local_rank": rank})
    # every rank is done communicating before any tears the group down: a rank destroying it while
    # another is still in a collective aborts in gloo's threads ("terminate called ...")
    dist.barrier()
    dist.destroy_process_group()
    queue.put((rank, result))


def run_distributed(model, dataset, nproc=2, config_file_list=None, config_dict=None, port=None):
    """Train and test ``model`` data-parallel in ``nproc`` local processes; returns each rank's
    result dict (as ``run_recbole_rag``'s), rank 0 first. Metrics are averaged over processes."""
    from recbole_rag.config import Config
    from recbole_rag.registry import OUR_TRAINERS, get_trainer

    if not isinstance(nproc, int) or nproc < 2:
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
    from recbole_rag.cli import parse_overrides

    parser = argparse.ArgumentParser(
        description="Data-parallel training in several local processes.",
        allow_abbrev=False,
        epilog="Any other --key=value overrides a setting.",
    )
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--model", "-m", default="SASRec")
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--config_files", default="")
    args, rest = parser.parse_known_args(argv)
    try:
        results = run_distributed(
            args.model, args.dataset, args.nproc, args.config_files.split() or None, parse_overrides(rest)
        )
    except RecBoleRagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.nproc} processes, test result: {dict(results[0]['test_result'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
