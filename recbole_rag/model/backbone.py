"""Load a pre-trained transformer backbone into our SASRecEncoder, from checkpoints of ours
(RaSeRec, DuoRec: ``encoder.*``) or of RecBole's SASRec (its own parameter names)."""

import torch

from recbole_rag.errors import CheckpointError

BACKBONE_MODELS = ("RaSeRec", "DuoRec", "SASRec")

# RecBole SASRec -> SASRecEncoder, per layer i (q, k, v are fused into one qkv projection).
_RECBOLE_LAYER = {
    "multi_head_attention.dense": "attn_out",
    "multi_head_attention.LayerNorm": "attn_norm",
    "feed_forward.dense_1": "ffn_in",
    "feed_forward.dense_2": "ffn_out",
    "feed_forward.LayerNorm": "ffn_norm",
}


def _from_recbole_sasrec(state):
    encoder = {
        "item_embedding.weight": state["item_embedding.weight"],
        "position_embedding.weight": state["position_embedding.weight"],
        "embedding_norm.weight": state["LayerNorm.weight"],
        "embedding_norm.bias": state["LayerNorm.bias"],
    }
    n_layers = len({k.split(".")[2] for k in state if k.startswith("trm_encoder.layer.")})
    for i in range(n_layers):
        prefix = f"trm_encoder.layer.{i}."
        for part in ("weight", "bias"):
            encoder[f"layers.{i}.qkv.{part}"] = torch.cat(
                [state[f"{prefix}multi_head_attention.{p}.{part}"] for p in ("query", "key", "value")]
            )
            for theirs, ours in _RECBOLE_LAYER.items():
                encoder[f"layers.{i}.{ours}.{part}"] = state[f"{prefix}{theirs}.{part}"]
    return encoder


def encoder_state(checkpoint, path="checkpoint"):
    """The SASRecEncoder state dict held by a plain checkpoint of RaSeRec, DuoRec or SASRec."""
    model = checkpoint.get("config", {}).get("model")
    if model not in BACKBONE_MODELS:
        raise CheckpointError(
            f"'{path}' holds a {model} model; RaSeRec's encoder loads {', '.join(BACKBONE_MODELS)} checkpoints "
            "(for another RecBole sequential model, --backbone=<its name> runs RaSeRec's RAFT on that model)."
        )
    state = checkpoint["state_dict"]
    if model == "SASRec":
        try:
            return _from_recbole_sasrec(state)
        except KeyError as err:
            raise CheckpointError(f"'{path}' is not a RecBole SASRec state dict: missing {err}.") from err
    return {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}


def load_backbone(encoder, checkpoint, path="checkpoint"):
    """Copy a checkpoint's backbone into ``encoder``; a clear error if the shapes do not fit."""
    state = encoder_state(checkpoint, path)
    own = encoder.state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if problems:
        saved = checkpoint.get("config", {})
        raise CheckpointError(
            f"'{path}' does not fit this model (it was trained on dataset {saved.get('dataset')} "
            f"with hidden_size {saved.get('hidden_size')}, n_layers {saved.get('n_layers')}): "
            + "; ".join(problems[:5])
        )
    encoder.load_state_dict(state)
