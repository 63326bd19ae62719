import csv
import glob
import os

import faiss
import numpy as np
import pytest
import torch

from bench import epoch_time, gpu_smoke, scale, sensitivity, serving, speed
from bench.accuracy import row_pattern
from bench.diagnostics import (
    curves,
    faiss_blas,
    mining_time,
    personaliser_weights,
    regen_plausibility,
    regenerator_views,
    search_bounds,
    sracl_padding,
)
from bench.diagnostics.__main__ import main as diagnostics
from bench.sensitivity import settings_grid
from recbole_rag import run_recbole_rag
from recbole_rag.errors import RecBoleRagError
from recbole_rag.memory import MemoryBank
from recbole_rag.model.sequential_recommender.raserec import RaSeRec


def test_sensitivity_trains_one_backbone_and_one_bank_for_every_setting(tiny, tmp_path, capsys):
    args = [f"--{k}={v}" for k, v in tiny.items() if k != "epochs"]
    out = tmp_path / "res"
    argv = [
        "--dataset=tiny",
        "--backbone_epochs=1",
        "--raft_epochs=1",
        "--ks=1,3",
        "--alphas=0.2,0.5",
        "--k=3",
        "--alpha=0.5",
        f"--out_dir={out}",
    ] + args
    assert sensitivity.main(argv) == 0
    with open(out / "tiny-sensitivity.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["swept"], r["K"], r["alpha"]) for r in rows] == [
        ("K", "1", "0.5"),
        ("K", "3", "0.5"),
        ("alpha", "3", "0.5"),
        ("alpha", "3", "0.2"),
    ]
    assert rows[1]["ndcg@10"] == rows[2]["ndcg@10"]  # the shared setting ran once
    assert len(glob.glob(str(tmp_path / "**" / "bank-*.npz"), recursive=True)) == 1  # one bank, reused
    assert (out / "tiny-sensitivity.png").stat().st_size > 0
    capsys.readouterr()
    assert sensitivity.main(argv) == 0  # resumed: nothing trains again
    assert "run " not in capsys.readouterr().out
    # a row stopped mid-RAFT (its -last.pth kept, no result yet) continues from its checkpoint,
    # though the sweep's settings also name the backbone (pretrained_path)
    (stopped,) = glob.glob(str(out / "tiny-sensitivity" / (row_pattern("alpha=0.2", 2020) + ".json")))
    os.remove(stopped)
    assert glob.glob(stopped[: -len(".json")] + "/*-last.pth")
    assert sensitivity.main(argv) == 0
    assert "resume alpha=0.2" in capsys.readouterr().out
    restored = RaSeRec.cache_training_neighbours.__qualname__
    assert restored == "RetrievalAugmentation.cache_training_neighbours"


def test_settings_grid_sweeps_each_parameter_around_the_other():
    assert settings_grid([1, 20], [0.1, 0.5], 20, 0.5) == [("K=1", 1, 0.5), ("K=20", 20, 0.5), ("alpha=0.1", 20, 0.1)]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ks=1,x"], "comma-separated ints"),
        (["--alphas=0.5,1.5"], "must lie in [0.0, 1.0]"),
        (["--backbone=GRU4Rec"], "SASRec or DuoRec"),
        (["--pretrained_path=missing.pth"], "does not exist"),
        (["--raft_epochs=0"], ">= 1"),
    ],
)
def test_sensitivity_bad_arguments(argv, message, capsys):
    assert sensitivity.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "module, argv, message",
    [
        (speed, ["--batches=0"], "must be >= 1"),
        (speed, ["--eval_repeats=0"], "must be >= 1"),
        (epoch_time, ["--rounds=0"], "--rounds"),
        (scale, ["--sizes=100"], ">= 2048"),
        (scale, ["--sizes=1e5,x"], "comma-separated numbers"),
        (scale, ["--sizes=inf"], "comma-separated numbers"),
        (scale, ["--indexes=ivf"], "must start with flat"),
        (scale, ["--indexes=flat,annoy"], "must start with flat"),
        (search_bounds, ["--bank=missing.npz"], "--bank:"),
    ],
)
def test_speed_and_scale_bad_arguments(module, argv, message, capsys):
    assert module.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1


def test_search_bounds_bad_clusters(tmp_path, capsys):
    bank = MemoryBank(4, "flat", "ip")
    bank.add(np.eye(4, dtype=np.float32), np.arange(4))
    bank.save(str(tmp_path / "bank.npz"))
    for clusters in ("8,x", "0"):
        assert search_bounds.main([f"--bank={tmp_path / 'bank.npz'}", f"--clusters={clusters}"]) == 2
        assert "--clusters" in capsys.readouterr().err


def test_speed_stops_with_one_line_when_its_measuring_process_fails(capsys):
    # the child fails on the dataset: its error comes back as one line, not a hang
    assert speed.main(["--dataset=missing", "--data_path=nowhere", "--batches=1"]) == 2
    assert "Dataset 'missing' not found" in capsys.readouterr().err
    # a child that ends without an answer (here: a target that never puts one)
    with pytest.raises(RecBoleRagError, match="ended .* with no result"):
        speed.measure_in_child("SASRec", "tiny", {}, 1, target=print)


def test_bench_tools_give_one_line_errors(tmp_path, capsys):
    assert personaliser_weights.main([f"--checkpoint={tmp_path / 'missing.pth'}"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert mining_time.main(["--dataset=missing", "--data_path=nowhere"]) == 2
    assert "Dataset 'missing' not found" in capsys.readouterr().err
    assert gpu_smoke.main(["--dataset=tiny", "--stray"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_epoch_time_ratio_is_the_median_of_interleaved_rounds():
    """A slow spell that hits the baseline and a model in the same round cancels in the ratio."""
    now = [0.0]
    per_round = {"base": [1, 2, 4], "model": [0.5, 1.6, 2]}  # a warm-up batch, then 2 timed ones
    costs = {name: iter([c for c in cs for _ in range(3)]) for name, cs in per_round.items()}

    def step(name):
        def run(batch):
            now[0] += next(costs[name])

        return run

    def refresh():
        now[0] += 7

    built = [(step("base"), [0, 1, 2], None), (step("model"), [0, 1, 2], refresh)]
    (base_time, base_ratio, base_extra), (time, ratio, extra) = epoch_time.time_rounds(
        built, batches=2, rounds=3, clock=lambda: now[0]
    )
    assert (base_time, base_ratio, base_extra) == pytest.approx((2, 1, 0))
    # per-round ratios 0.5, 0.8, 0.5: their median, not the ratio of the medians (1.6 / 2)
    assert (time, ratio, extra) == pytest.approx((1.6, 0.5, 7))


def test_epoch_time_times_every_sracl_mode_beside_recbole_sasrec(tiny, tmp_path, capsys):
    item_file = os.path.join(tiny["data_path"], "tiny", "tiny.item")
    rows = ["item_id:token\tclass:token_seq"] + [f"i{i}\tg{i % 4} g{i % 3}" for i in range(1, 31)]
    with open(item_file, "w") as f:
        f.write("\n".join(rows) + "\n")
    argv = ["--dataset=tiny", f"--data_path={tiny['data_path']}", "--variants=sracl", "--batches=2", "--rounds=2"]
    assert epoch_time.main([*argv, f"--out_dir={tmp_path}"]) == 0
    table = (tmp_path / "tiny-epoch-time-sracl.md").read_text()
    labels = [label for label, _, _ in epoch_time.VARIANTS["sracl"]]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert [row.split(" | ")[0][2:] for row in rows] == labels
    assert rows[0].endswith("| 1.00 |") and "--variants=sracl --batches=2 --rounds=2" in table
    assert "median of 2 interleaved rounds" in table


def test_gpu_smoke_runs_every_model_for_an_epoch_and_reports_failures(tiny, tmp_path):
    item_file = os.path.join(tiny["data_path"], "tiny", "tiny.item")
    rows = ["item_id:token\tclass:token_seq"] + [f"i{i}\tg{i % 4} g{i % 3}" for i in range(1, 31)]
    with open(item_file, "w") as f:
        f.write("\n".join(rows) + "\n")
    argv = [
        "--dataset=tiny",
        f"--data_path={tiny['data_path']}",
        f"--out_dir={tmp_path}",
        "--pattern_min_support=2",
        "--user_k=3",
        f"--regen_data_path={tmp_path / 'regen'}",
        "--hidden_size=16",
        "--inner_size=32",
    ]
    assert gpu_smoke.main(argv) == 0
    table = (tmp_path / "tiny-smoke.md").read_text()
    assert all(f"| {label} |" in table for label, _, _ in gpu_smoke.RUNS) and "FAILED" not in table
    broken = [("a model that does not exist", "NoSuchModel", {})]
    rows = gpu_smoke.smoke("tiny", {"data_path": tiny["data_path"]}, broken, log=lambda *a, **k: None)
    assert rows[0][3].startswith("FAILED: UnknownModelError")


def test_mining_time_mines_a_dataset_and_a_synthetic_set(tiny, capsys):
    argv = [
        "--dataset=tiny",
        f"--data_path={tiny['data_path']}",
        "--synthetic=2000",
        "--user_inter_num_interval=[1,inf)",
    ]
    assert mining_time.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("tiny: 60 sequences") and "patterns (lengths 2..:" in lines[1]
    assert lines[2].startswith("synthetic: 250 sequences")


def test_scale_recall_and_dataset_copies(tmp_path):
    assert scale.recall_at_k(np.array([[1, 2] + list(range(10, 18))]), np.array([list(range(10))])) == 0.2
    source = tmp_path / "src" / "d"
    source.mkdir(parents=True)
    (source / "d.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t1\nu1\ti2\t2\n")
    name = scale.copy_dataset(str(tmp_path / "src"), "d", 3, str(tmp_path / "out"))
    lines = (tmp_path / "out" / name / f"{name}.inter").read_text().splitlines()
    assert name == "d-x3" and len(lines) == 7 and lines[-1] == "u1_2\ti2_2\t2"


_LOG_BLOCK = """25 Nov 14:57    INFO  epoch {e} evaluating [time: 2.71s, valid_score: {v}]
25 Nov 14:57    INFO  valid result: 
recall@5 : 0.0288    recall@10 : 0.0463    recall@20 : 0.0723    ndcg@5 : 0.0182    ndcg@10 : {v}    ndcg@20 : 0.0303
"""


def test_curves_put_each_runs_valid_metric_per_epoch_side_by_side(tmp_path, capsys):
    fast, slow = tmp_path / "fast.log", tmp_path / "slow.log"
    fast.write_text(
        "".join(_LOG_BLOCK.format(e=e, v=v) for e, v in enumerate([0.02, 0.03, 0.031]))
        + "best valid : OrderedDict([('ndcg@10', 0.031)])\ntest result: ndcg@10 : 0.0999\n"
    )
    slow.write_text("".join(_LOG_BLOCK.format(e=e, v=v) for e, v in enumerate([0.01, 0.02])))
    out = tmp_path / "res" / "curves"
    assert curves.main([f"fast={fast}", f"slow={slow}", f"--out={out}"]) == 0
    with open(f"{out}.csv") as f:
        rows = list(csv.reader(f))
    assert rows == [["epoch", "fast", "slow"], ["0", "0.02", "0.01"], ["1", "0.03", "0.02"], ["2", "0.031", ""]]
    assert "fast: best 0.0310 at epoch 2" in (tmp_path / "res" / "curves.md").read_text()
    assert (tmp_path / "res" / "curves.png").stat().st_size > 0


def test_curves_refuse_bad_run_specs_and_logs_without_valid_results(tmp_path, capsys):
    empty = tmp_path / "empty.log"
    empty.write_text("nothing trained here\n")
    out = f"--out={tmp_path / 'c'}"
    assert curves.main(["no-label", out]) == 2
    assert "LABEL=LOGFILE" in capsys.readouterr().err
    assert curves.main([f"a={tmp_path / 'missing.log'}", out]) == 2
    assert "no log file" in capsys.readouterr().err
    assert curves.main([f"a={empty}", out]) == 2
    assert "holds no valid result with ndcg@10" in capsys.readouterr().err


def test_speed_times_raserecs_inference_on_the_exact_and_the_auto_bank(tiny, monkeypatch):
    from recbole_rag.memory import bank as bank_module

    monkeypatch.setattr(bank_module, "AUTO_IVF_MIN_ENTRIES", 1)  # tiny's bank as a large one: ivf
    measured = {
        label: speed.measure(model, "tiny", {**tiny, "retrieval_k": 3}, 2)
        for label, model in (("SASRec (RecBole)", "SASRec"), ("RaSeRec", "RaSeRec"))
    }
    rows = {row[0]: row for row in speed.report_rows(measured)}
    assert measured["RaSeRec"]["bank"] == "flat" and measured["RaSeRec"]["auto_bank"].startswith("ivf (nlist ")
    auto = f"RaSeRec stage 2, memory_index auto ({measured['RaSeRec']['auto_bank']})"
    assert rows[auto][4] == measured["RaSeRec"]["raft_auto_infer_s_per_1000_users"] > 0
    assert "x the backbone's inference" in rows[auto][-1]
    assert "over the configured bank (flat)" in rows["RaSeRec stage 2 (RAFT, neighbours cached)"][-1]


def test_speed_of_a_checkpoint_tests_the_auto_bank_against_the_exact_one(raserec_run, tiny, tmp_path, monkeypatch):
    from recbole_rag.memory import bank as bank_module

    checkpoint = raserec_run["saved_model_file"]
    measured, bank, entries, dataset = speed.measure_checkpoint(checkpoint, 1)
    assert bank == "flat" and entries > 0  # tiny's bank is small: auto is exact
    exact, default, alone = (measured[v] for v in ("exact bank", "auto bank", "backbone alone"))
    assert default[0] == exact[0] and exact[0] == pytest.approx(raserec_run["test_result"], abs=1e-4)
    assert alone[0] != exact[0]  # retrieval off ranks otherwise
    rows = {row[0]: row for row in speed.inference_rows(measured)}
    assert rows["auto bank"][-2].identical and rows["backbone alone"][2] == 1.0
    assert rows["auto bank"][-3][0] == 0 and rows["auto bank"][-3][1].identical
    monkeypatch.setattr(bank_module, "AUTO_IVF_MIN_ENTRIES", 1)
    assert speed.measure_checkpoint(checkpoint, 1)[1].startswith("ivf (nlist ")
    out = ["--checkpoint=" + checkpoint, "--eval_repeats=1", f"--out_dir={tmp_path}"]
    assert speed.main(out) == 0
    table = (tmp_path / f"{dataset}-inference.md").read_text()
    assert "| auto bank |" in table and "N@10 vs exact p" in table
    graph = {**tiny, "retrieval_k": 3, "epochs": 1, "raft_epochs": 1, "memory_index": "hnsw"}  # its bank file kept
    graph_checkpoint = run_recbole_rag("RaSeRec", "tiny", config_dict=graph)["saved_model_file"]
    assert speed.measure_checkpoint(graph_checkpoint, 1)[1].startswith("ivf")  # rebuilt, not refused
    sasrec = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 1})
    assert speed.main(["--checkpoint=" + sasrec["saved_model_file"]]) == 2


def test_speed_inference_is_the_median_of_timed_passes_after_an_untimed_one():
    now, costs = [0.0], iter([100.0, 3.0, 1.0, 2.0])  # the warm-up pass is slow and not counted

    class Trainer:
        def evaluate(self, test, load_best_model):
            now[0] += next(costs)

    class Test:
        dataset = range(500)

    per_1000 = speed.inference_per_1000_users(Trainer(), Test(), repeats=3, clock=lambda: now[0])
    assert per_1000 == pytest.approx(2.0 / 500 * 1000)


def test_faiss_blas_times_both_switches_and_compares_neighbours(tmp_path, capsys):
    from recbole_rag.memory import MemoryBank

    rng = np.random.default_rng(5)
    bank = MemoryBank(64)
    bank.add(rng.normal(size=(300, 64)).astype(np.float32), np.arange(300))
    bank.save(tmp_path / "bank.npz")
    threshold = faiss.cvar.distance_compute_blas_threshold
    faiss_blas.main([f"--bank={tmp_path / 'bank.npz'}", "--k=5", "--batch=32"])
    out = capsys.readouterr().out
    assert "300 keys of dim 64" in out and "same neighbour set: 100.00% of 300 queries" in out
    assert faiss.cvar.distance_compute_blas_threshold == threshold  # put back as it was
    for bad in ([f"--bank={tmp_path / 'bank.npz'}", "--k=301"], [f"--bank={tmp_path / 'none.npz'}"]):
        assert faiss_blas.main(bad) == 2
    assert "--bank:" in capsys.readouterr().err


def test_search_bounds_reports_what_exact_pruning_leaves(tmp_path, capsys):

    from recbole_rag.memory import MemoryBank

    rng = np.random.default_rng(0)
    keys = rng.normal(size=(400, 8)).astype(np.float32)
    keys[1] = keys[0]  # one exact duplicate
    bank = MemoryBank(8, metric="cosine")
    bank.add(keys, np.arange(400))
    bank.save(tmp_path / "bank.npz")
    search_bounds.main([f"--bank={tmp_path / 'bank.npz'}", "--queries=20", "--k=5", "--clusters=4,8"])
    out = capsys.readouterr().out
    assert "cluster bound, 8 clusters:" in out and "exact duplicates: 1 of 400 keys" in out
    assert search_bounds.main([f"--bank={tmp_path / 'bank.npz'}", "--k=400"]) == 2
    assert "--k must be in [1, 399]" in capsys.readouterr().err


def test_train_step_runs_the_model_in_bfloat16_under_enable_amp(tiny):
    _, model, trainer, train, _ = speed.setup("DuoRec", "tiny", tiny)
    batch = next(iter(train))
    dtypes = []
    model.encoder.layers[0].ffn_in.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    before = model.item_embedding.weight.detach().clone()
    speed.train_step(model, trainer.optimizer, amp=True)(batch)
    speed.train_step(model, trainer.optimizer)(batch)
    assert dtypes == [torch.bfloat16, torch.float32]
    assert model.item_embedding.weight.dtype == torch.float32
    assert not torch.equal(model.item_embedding.weight, before)


def test_regenerator_views_counts_picks_and_distinct_decodes(tiny, tmp_path, capsys):
    from recbole_rag.quick_start import run_recbole_rag
    from recbole_rag.trainer import load_checkpoint

    settings = {**tiny, "epochs": 1, "pattern_min_support": 2, "regen_conditions": 3}
    regen = run_recbole_rag("Regenerator", "tiny", config_dict={**settings, "regen_data_path": str(tmp_path / "out")})
    checkpoint = load_checkpoint(regen["saved_model_file"])
    bias = checkpoint["state_dict"]["condition_head.2.bias"]
    bias[:] = torch.tensor([0.0, 50.0, 0.0])  # every pattern's pick forced to view 1
    torch.save(checkpoint, tmp_path / "view1.pth")
    use = regenerator_views.view_use(str(tmp_path / "view1.pth"), n_patterns=20, n_users=15)
    assert use["picks"].tolist() == [0, 20, 0] and use["pick_weight"] > 0.99
    assert use["distinct"].sum() == 15 and use["distinct"][0] == 0 and len(use["distinct"]) == 4
    assert len(use["lengths"]) == 15 * 3 and use["lengths"].max() <= 24
    state, hidden = checkpoint["state_dict"], settings["hidden_size"]
    torch.manual_seed(0)
    for name in ("condition_views.2.weight", "condition_views.2.bias"):  # three far-apart views
        state[name][:] = torch.randn_like(state[name]) * 5
    torch.save(checkpoint, tmp_path / "apart.pth")
    apart = regenerator_views.view_use(str(tmp_path / "apart.pth"), n_patterns=20, n_users=15)
    assert apart["distinct"][2:].sum() > 0  # some users decode differently through the views
    for name in ("condition_views.2.weight", "condition_views.2.bias"):  # three copies of view 0
        state[name][:] = state[name][:hidden].repeat(3, *[1] * (state[name].dim() - 1))
    torch.save(checkpoint, tmp_path / "same_views.pth")
    same = regenerator_views.view_use(str(tmp_path / "same_views.pth"), n_patterns=20, n_users=15)
    assert same["distinct"].tolist() == [0, 15, 0, 0]  # identical views: one distinct decode per user
    assert regenerator_views.main([f"--checkpoint={tmp_path / 'view1.pth'}", "--users=5"]) == 0
    assert "mined patterns by picked view: 0 / " in capsys.readouterr().out

    sasrec = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 1})
    for argv, message in [
        ([f"--checkpoint={sasrec['saved_model_file']}"], "not a Regenerator's"),
        ([f"--checkpoint={tmp_path / 'view1.pth'}", "--patterns=0"], "--patterns and --users must be >= 1"),
        ([f"--checkpoint={tmp_path / 'missing.pth'}"], "missing.pth"),
        (["--users=5"], "--checkpoint"),
    ]:
        assert regenerator_views.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, (argv, err)


def test_regen_plausibility_ranks_each_decoded_item_by_the_scorer(tiny, tmp_path, capsys):
    from recbole.data.interaction import Interaction

    from recbole_rag.inference import load_data_and_model
    from recbole_rag.quick_start import run_recbole_rag

    settings = {**tiny, "epochs": 1, "pattern_min_support": 2, "regen_conditions": 2}
    regen = run_recbole_rag("Regenerator", "tiny", config_dict={**settings, "regen_data_path": str(tmp_path / "out")})
    sasrec = run_recbole_rag("SASRec", "tiny", config_dict={**tiny, "epochs": 1})
    _, scorer, _, _, _, _ = load_data_and_model(sasrec["saved_model_file"])
    by_position = regen_plausibility.ranks(scorer, [(3, 4, 5), (7, 8)])
    assert sorted(by_position) == [1, 2] and len(by_position[1]) == 2 and len(by_position[2]) == 1
    scores = scorer.full_sort_predict(
        Interaction({"item_id_list": torch.tensor([[3, 4]]), "item_length": torch.tensor([2])})
    )
    scores = scores.view(-1).detach()
    scores[0] = -float("inf")
    assert by_position[2][0] == int((scores > scores[5]).sum()) + 1  # item 5's rank after (3, 4)

    results = regen_plausibility.plausibility(regen["saved_model_file"], sasrec["saved_model_file"], 20, min_len=3)
    forced = results["regenerated (min_len 3)"]
    assert 2 in forced and len(forced[2]) == len(forced[1])  # every decode reaches a third item
    assert sorted(results["training windows of 3 items"]) == [1, 2]  # the 2nd and 3rd items of each window
    assert len(results["mined patterns of 3+ items"][2]) == len(forced[1])  # as many patterns as sequences
    n_items = scorer.n_items
    assert all(1 <= r.min() and r.max() < n_items for by_j in results.values() for r in by_j.values())

    for argv, message in [
        (
            [f"--regenerator={sasrec['saved_model_file']}", f"--scorer={sasrec['saved_model_file']}"],
            "not a Regenerator's",
        ),
        ([f"--regenerator={regen['saved_model_file']}", f"--scorer={regen['saved_model_file']}"], "must be a ranking"),
        (
            [f"--regenerator={regen['saved_model_file']}", f"--scorer={sasrec['saved_model_file']}", "--min_len=99"],
            "--min_len",
        ),
        ([f"--regenerator={regen['saved_model_file']}", f"--scorer={tmp_path / 'missing.pth'}"], "missing.pth"),
        (
            [f"--regenerator={regen['saved_model_file']}", f"--scorer={sasrec['saved_model_file']}", "--window=1"],
            "--window",
        ),
        ([f"--regenerator={regen['saved_model_file']}"], "--scorer"),
    ]:
        assert regen_plausibility.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, (argv, err)


@pytest.mark.parametrize(
    "module, argv",
    [
        (curves, []),  # runs and --out missing
        (epoch_time, ["--batches=x"]),
        (speed, ["--eval_repeats=x"]),
        (scale, ["--batches=x"]),
        (mining_time, ["--min_support=x"]),
        (personaliser_weights, []),  # --checkpoint missing
        (search_bounds, []),  # --bank missing
        (gpu_smoke, []),  # --dataset missing
        (sensitivity, ["--seed=x"]),
    ],
)
def test_bench_argument_errors_are_one_line(module, argv, capsys):
    assert module.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--help" in err, err


def test_serving_times_one_user_and_batches_and_finds_the_pairs_it_adds(raserec_run, tmp_path, capsys):
    argv = [f"--checkpoint={raserec_run['saved_model_file']}", "--users=20", "--batch=8", "--adds=30"]
    assert serving.main([*argv, f"--out_dir={tmp_path}"]) == 0
    with open(tmp_path / "tiny-serving.csv") as f:
        rows = {r["retrieval"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"with", "without"}
    assert all(0 < float(r["one user p50 ms"]) <= float(r["one user p99 ms"]) for r in rows.values())
    out = capsys.readouterr().out
    assert "Adding 30 new <history, next item> pairs" in out and "retrieved by a query of their own history" in out
    found = float(out.split("ms (encoding included); ")[1].split("%")[0])
    assert found >= 90  # a query of the added history finds the pair (its own key: cosine 1)
    assert serving.main(["--checkpoint=nope.pth"]) == 2
    assert serving.main([f"--checkpoint={raserec_run['saved_model_file']}", "--users=0"]) == 2


def test_the_diagnostics_have_one_entry_point(capsys):
    assert diagnostics([]) == 0
    assert "regen_plausibility" in capsys.readouterr().out
    assert diagnostics(["nope"]) == 2
    assert "unknown diagnostic 'nope'" in capsys.readouterr().err
    assert diagnostics(["mining_time", "--dataset=missing", "--data_path=nowhere"]) == 2  # NAME's own arguments
    assert "Dataset 'missing' not found" in capsys.readouterr().err


def test_padding_counts_as_a_substitute_only_where_it_is_among_the_k_nearest():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(41, 8)).astype(np.float32)  # row 0: padding's row, never read
    padding = items[5] + 0.01 * rng.normal(size=8).astype(np.float32)  # nearly item 5
    inside = sracl_padding.padding_neighbours(items, padding, k=3)
    assert inside.shape == (40,) and inside[4]  # item 5 (index 4 of the items) has padding nearest
    far = -items[1:].sum(0)  # opposite to the items' mean direction: nobody's near
    assert sracl_padding.padding_neighbours(items, far, k=3).sum() < inside.sum()
    everywhere = sracl_padding.padding_neighbours(items, padding, k=39)  # all others but one compete
    assert everywhere.sum() > inside.sum()
    # the authors' rule, brute force: rank all rows with padding's as row 0, drop the first (the item)
    table = np.vstack([padding, items[1:]])
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    ranked = np.argsort(-(table @ table.T), axis=1)[1:, 1:4]
    brute = (ranked == 0).any(1)
    for chunk in (7, 2048):  # chunks of the similarity matrix, across their boundaries or not
        assert np.array_equal(sracl_padding.padding_neighbours(items, padding, k=3, chunk=chunk), brute)


def test_the_padding_diagnostic_refuses_bad_input_in_one_line(capsys):
    assert diagnostics(["sracl_padding"]) == 2
    assert "--dataset" in capsys.readouterr().err
    assert diagnostics(["sracl_padding", "--dataset=missing", "--data_path=nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing" in err and err.count("\n") == 0
