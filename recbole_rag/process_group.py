"""One of several training processes without a GPU: RecBole's ``Config._init_device`` starts
NCCL on a CUDA device; our Config calls ``init_cpu_process_group`` instead (gloo on the CPU).
recbole_rag.distributed starts the processes."""

import torch
import torch.distributed as dist

from recbole_rag.errors import ConfigError

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
