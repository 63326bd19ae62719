"""The regenerated dataset as a reusable artefact: RecBole atomic files under a new name.

Layout of ``<regen_data_path>/<dataset>-regen/`` (RecBole's ``benchmark_filename`` format, one
row per <history, next item> pair, so RecBole uses the split as written):

    <name>.train.inter   every original training row, then the regenerated rows: each
                         regenerated pattern q of user u gives rows q[:j] -> q[j] (j >= 1) under
                         u's own user id, timestamped just after u's last training item
    <name>.valid.inter   the original validation rows, unchanged (each user's second-last item)
    <name>.test.inter    the original test rows, unchanged (each user's last item)
    <name>.patterns      the mined patterns (item tokens, support), for a pattern memory bank
    <name>.yaml          the settings RecBole needs to load these files (pass it in --config_files)
    manifest.json        source dataset and its checksum, settings, counts, time

Everything is written into a temporary sibling folder that is renamed into place at the end,
so an interrupted run never leaves a dataset a later run would pick up.
"""

import hashlib
import json
import os
import shutil
import time

import numpy as np

from recbole_rag.errors import DatasetError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Settings that change what is written: a saved set is reused only when all of them match.
REGEN_KEYS = (
    "pattern_window",
    "pattern_min_support",
    "pattern_min_len",
    "pattern_max_len",
    "pattern_pairs_per_sequence",
    "regen_per_user",
    "regen_balance",
    "MAX_ITEM_LIST_LENGTH",
    "user_inter_num_interval",
    "item_inter_num_interval",
    "seed",
    "epochs",
    "learning_rate",
    "train_batch_size",
    "hidden_size",
    "n_layers",
    "n_heads",
    "inner_size",
    "hidden_dropout_prob",
)


def regen_name(dataset):
    return f"{dataset}-regen"


def regen_root(config):
    """Folder that holds ``<dataset>-regen/``: ``regen_data_path``, else next to the source."""
    return config["regen_data_path"] or os.path.dirname(os.path.normpath(config["data_path"]))


def regen_folder(config):
    return os.path.join(regen_root(config), regen_name(config["dataset"]))


def source_checksum(config):
    path = os.path.join(config["data_path"], f"{config['dataset']}.inter")
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expected_manifest(config):
    """The parts of a manifest that must match for a saved set to be reused."""
    return {
        "version": FORMAT_VERSION,
        "source": {"dataset": config["dataset"], "inter_sha1": source_checksum(config)},
        "settings": {key: config[key] for key in REGEN_KEYS},
    }


def find_regenerated(config):
    """The folder of a saved regenerated set made from this source with these settings, or None
    when there is none. A folder whose manifest differs stops with what differs, unless
    ``regen_overwrite`` (then None: it will be replaced)."""
    folder = regen_folder(config)
    if not os.path.isdir(folder):
        return None
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        raise DatasetError(
            f"'{folder}' exists but has no {MANIFEST}: it was not written by a completed "
            "regeneration. Remove it, or set --regen_data_path to another folder."
        )
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    wanted = expected_manifest(config)
    differences = _differences(wanted, {k: saved.get(k) for k in wanted})
    if not differences:
        return folder
    if config["regen_overwrite"]:
        return None
    raise DatasetError(
        f"The regenerated dataset in '{folder}' does not match this run ({'; '.join(differences[:6])}). "
        "Pass --regen_overwrite=True to regenerate it, or --regen_data_path=<another folder> to keep both."
    )


def _differences(wanted, saved, prefix=""):
    out = []
    for key, value in wanted.items():
        other = (saved or {}).get(key)
        if isinstance(value, dict):
            out += _differences(value, other if isinstance(other, dict) else {}, f"{prefix}{key}.")
        elif json.loads(json.dumps(value)) != other:
            out.append(f"{prefix}{key}: saved {other!r}, now {value!r}")
    return out


def split_rows(dataset, config):
    """(user tokens, history strings, target tokens, timestamps) of a split's rows."""
    feat = dataset.inter_feat
    uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    item_tokens = dataset.field2id_token[iid]
    histories = feat[iid + config["LIST_SUFFIX"]].numpy()
    lengths = feat[config["ITEM_LIST_LENGTH_FIELD"]].numpy()
    return (
        dataset.field2id_token[uid][feat[uid].numpy()],
        [" ".join(item_tokens[row[:n]]) for row, n in zip(histories, lengths)],
        item_tokens[feat[iid].numpy()],
        feat[config["TIME_FIELD"]].numpy(),
    )


def regenerated_rows(dataset, users, patterns, times):
    """Rows q[:j] -> q[j] of each regenerated pattern q (0-padded) of each user (internal ids)."""
    item_tokens, user_tokens = dataset.field2id_token[dataset.iid_field], dataset.field2id_token[dataset.uid_field]
    rows = ([], [], [], [])
    for user, user_patterns, t in zip(users, patterns, times):
        for pattern in user_patterns:
            pattern = pattern[pattern > 0]
            for j in range(1, len(pattern)):
                rows[0].append(user_tokens[user])
                rows[1].append(" ".join(item_tokens[pattern[:j]]))
                rows[2].append(item_tokens[pattern[j]])
                rows[3].append(t + 1.0)
    return rows


def _write_inter(path, config, rows):
    iid = config["ITEM_ID_FIELD"]
    header = [
        f"{config['USER_ID_FIELD']}:token",
        f"{iid}{config['LIST_SUFFIX']}:token_seq",
        f"{iid}:token",
        f"{config['TIME_FIELD']}:float",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(header) + "\n")
        for parts in rows:
            for user, history, target, t in zip(*parts):
                f.write(f"{user}\t{history}\t{target}\t{float(t)!r}\n")


def _loader_settings(config):
    iid = config["ITEM_ID_FIELD"]
    return {
        "benchmark_filename": ["train", "valid", "test"],
        f"alias_of_{iid}": [iid + config["LIST_SUFFIX"]],
        "load_col": {"inter": [config["USER_ID_FIELD"], iid + config["LIST_SUFFIX"], iid, config["TIME_FIELD"]]},
        "MAX_ITEM_LIST_LENGTH": config["MAX_ITEM_LIST_LENGTH"],
    }


def write_regenerated(config, splits, regenerated, patterns, seconds):
    """Write the regenerated dataset (see the module docstring); returns its folder.

    splits: the source's (train, valid, test) RecBole datasets; regenerated: (users (U,),
    patterns (U, n, pattern_max_len)) in internal ids; patterns: the mined ``Patterns``.
    """
    train, valid, test = splits
    name, folder = regen_name(config["dataset"]), regen_folder(config)
    root = os.path.dirname(folder)
    os.makedirs(root, exist_ok=True)
    tmp = os.path.join(root, f".{name}.tmp-{os.getpid()}-{time.time_ns()}")
    os.makedirs(tmp)
    try:
        train_rows = split_rows(train, config)
        users, user_patterns = regenerated
        last_time = np.full(train.user_num, -np.inf)
        feat = train.inter_feat
        np.maximum.at(last_time, feat[config["USER_ID_FIELD"]].numpy(), feat[config["TIME_FIELD"]].numpy())
        extra = regenerated_rows(train, users, user_patterns, last_time[users])
        _write_inter(os.path.join(tmp, f"{name}.train.inter"), config, [train_rows, extra])
        _write_inter(os.path.join(tmp, f"{name}.valid.inter"), config, [split_rows(valid, config)])
        _write_inter(os.path.join(tmp, f"{name}.test.inter"), config, [split_rows(test, config)])
        _write_patterns(os.path.join(tmp, f"{name}.patterns"), train, patterns)
        with open(os.path.join(tmp, f"{name}.yaml"), "w", encoding="utf-8") as f:
            f.write("# Loads the regenerated dataset written by recbole_rag.regeneration (see manifest.json).\n")
            json.dump(_loader_settings(config), f)  # JSON is YAML
            f.write("\n")
        expected = expected_manifest(config)
        manifest = {
            **expected,
            "source": {**expected["source"], "data_path": os.path.abspath(config["data_path"])},
            "counts": {
                "users": int(train.user_num - 1),
                "items": int(train.item_num - 1),
                "patterns": len(patterns),
                "regenerated_patterns": int((user_patterns > 0).any(-1).sum()),
                "train_rows_original": len(train_rows[0]),
                "train_rows_regenerated": len(extra[0]),
                "valid_rows": len(valid.inter_feat),
                "test_rows": len(test.inter_feat),
            },
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "seconds": round(seconds, 1),
        }
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:  # last: marks the set complete
            json.dump(manifest, f, indent=2)
        _move_into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _move_into_place(tmp, folder):
    """Rename ``tmp`` to ``folder``; an older set there is replaced only after the new one is whole."""
    if not os.path.exists(folder):
        os.rename(tmp, folder)
        return
    old = f"{tmp}-old"
    os.rename(folder, old)
    os.rename(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def _write_patterns(path, dataset, patterns):
    item_tokens = dataset.field2id_token[dataset.iid_field]
    with open(path, "w", encoding="utf-8") as f:
        f.write("pattern\tsupport\n")
        for items, length, support in zip(patterns.items, patterns.lengths, patterns.support):
            f.write(f"{' '.join(item_tokens[items[:length]])}\t{int(support)}\n")


def read_patterns(path, dataset):
    """(items (P, max_len) internal ids 0-padded, support (P,)) from a ``.patterns`` file."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()[1:]
    rows = [line.split("\t") for line in lines if line]
    token_lists = [r[0].split(" ") for r in rows]
    width = max((len(t) for t in token_lists), default=0)
    items = np.zeros((len(rows), width), np.int64)
    for i, tokens in enumerate(token_lists):
        items[i, : len(tokens)] = dataset.token2id(dataset.iid_field, tokens)
    return items, np.array([int(r[1]) for r in rows], np.int64)
