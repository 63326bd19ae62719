"""The trainer of one of several data-parallel processes (recbole_rag.distributed starts them).

RecBole's ``AbstractTrainer`` wraps the model as ``DistributedDataParallel(device_ids=[rank])``,
which a CPU model refuses: ``distributed_trainer`` builds that wrapper itself (``device_ids`` only
on a GPU), gives every rank rank 0's checkpoint name, and waits after ``fit`` until rank 0 has
written the best checkpoint, so every rank tests the same model.
"""

import torch
import torch.distributed as dist
from recbole.trainer import Trainer as RecBoleTrainer
from torch.nn.parallel import DistributedDataParallel

from recbole_rag.errors import ConfigError
from recbole_rag.trainer.safe_checkpoint import SafeCheckpointMixin


def check_single_stage(trainer_class):
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
