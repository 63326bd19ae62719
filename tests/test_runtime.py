import pytest
import torch

from recbole_rag import run_recbole_rag
from recbole_rag.errors import ConfigError
from recbole_rag.runtime import tune_cpu


@pytest.fixture
def restore_denormals():
    yield
    torch.set_flush_denormal(False)


def test_tune_cpu_flushes_denormals(restore_denormals):
    torch.set_flush_denormal(False)
    assert torch.tensor([1e-40]).item() != 0.0
    applied = tune_cpu()
    if applied["flush_denormal"]:  # x86 with SSE3; elsewhere torch reports it unsupported
        assert torch.tensor([1e-40]).item() == 0.0


def test_cpu_tuning_is_a_setting(tiny, restore_denormals):
    torch.set_flush_denormal(False)
    run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 1, "cpu_tuning": False})
    assert torch.tensor([1e-40]).item() != 0.0
    with pytest.raises(ConfigError, match="cpu_tuning"):
        run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "cpu_tuning": "yes"})
