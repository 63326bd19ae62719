import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from recbole.data import data_preparation

from recbole_rag import Config, get_model, get_trainer, run_recbole_rag
from recbole_rag.data import load_dataset
from recbole_rag.errors import CheckpointError, ConfigError, DatasetError
from recbole_rag.model.gru_encoder import GRUEncoder
from recbole_rag.model.sequential_recommender.duorec import info_nce
from recbole_rag.model.sequential_recommender.sracl import anchored_info_nce
from recbole_rag.semantic import embed, nearest_neighbours
from recbole_rag.semantic import texts as T
from recbole_rag.semantic.llm import ChatWriter, LLMError
from recbole_rag.trainer import load_checkpoint
from recbole_rag.trainer.sracl_trainer import SRACLTrainer

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance"]


def write_item_text(tiny, n_items=30):
    """A movie-style .item file (free-text titles) for the tiny dataset."""
    rows = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    rows += [
        f"i{i}\tThe {GENRES[i % 5]} Story, part {i}\t{1990 + i % 7}\t{GENRES[i % 5]} {GENRES[(i + 1) % 5]}"
        for i in range(1, n_items + 1)
    ]
    (Path(tiny["data_path"]) / "tiny" / "tiny.item").write_text("\n".join(rows) + "\n")
    return tiny


@pytest.fixture
def texts(tiny):
    return write_item_text(tiny)


def _setup(tiny, **overrides):
    config = Config("SRACL", "tiny", config_dict={**tiny, "user_k": 3, **overrides})
    train, valid, test = data_preparation(config, load_dataset(config))
    model = get_model("SRACL")(config, train.dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "SRACL")(config, model)
    return config, model, trainer, train


def _vector_file(tmp_path, n_items=30, dim=8, seed=0):
    """A user-supplied item embedding file (.npz keyed by item id)."""
    path = tmp_path / "item_vectors.npz"
    vectors = np.random.default_rng(seed).normal(size=(n_items, dim)).astype(np.float32)
    np.savez(path, item_id=np.array([f"i{i}" for i in range(1, n_items + 1)]), embedding=vectors)
    return str(path)


def test_sracl_runs_offline_end_to_end_and_a_second_run_embeds_nothing(texts, tmp_path, monkeypatch):
    result = run_recbole_rag("SRACL", "tiny", config_dict={**texts, "epochs": 1})
    assert result["semantic_source"].startswith("text (template): movie_title, release_year, class; users: text")
    assert result["semantic_texts_embedded"] > 30  # item descriptions and user summaries
    cache = tmp_path / "saved" / "semantic" / "tiny-all-MiniLM-L6-v2.npz"
    with np.load(cache) as saved:
        assert str(saved["model"]) == "all-MiniLM-L6-v2"
        assert saved["embeddings"].shape == (result["semantic_texts_embedded"], 384)

    def no_model(name, pooling=None):
        raise AssertionError("the second run loaded the sentence model")

    monkeypatch.setattr(embed, "load_sentence_model", no_model)
    again = run_recbole_rag("SRACL", "tiny", config_dict={**texts, "epochs": 1})
    assert again["semantic_texts_embedded"] == 0
    assert 0 <= again["test_result"]["ndcg@10"] <= 1
    items_only = run_recbole_rag("SRACL", "tiny", config_dict={**texts, "epochs": 1, "user_semantics": "items"})
    assert items_only["semantic_source"].startswith("text (template): movie_title, release_year, class; users: items")
    assert items_only["semantic_texts_embedded"] == 0  # item texts were cached; no user texts
    state = load_checkpoint(again["saved_model_file"])["state_dict"]  # weights_only loader
    assert any(k.startswith("synthesis.") for k in state) and "user_neighbours" not in state


def test_similar_users_never_include_the_rows_own_user(tiny, tmp_path):
    for source in ({"semantic_embedding_file": _vector_file(tmp_path)}, {"semantic_source": "categorical"}):
        if "semantic_source" in source:
            write_item_text(tiny)
        _, model, trainer, train = _setup(tiny, **source)
        trainer.prepare_semantics(train.dataset)
        for batch in train:
            users = batch[model.USER_ID]
            retrieved = model.retrieved_units(users)
            assert retrieved.shape == (len(users), 3)
            assert not (retrieved == users[:, None]).any()
            assert (retrieved > 0).all()  # real users with history, never the padding user


def test_nearest_neighbours_skip_the_query_even_among_duplicates():
    vectors = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)  # every vector has 3 exact copies
    found = nearest_neighbours(vectors, 3)
    assert not (found == np.arange(12)[:, None]).any()
    assert (found // 4 == np.arange(12)[:, None] // 4).all()  # the copies, the nearest others


def test_approximate_neighbours_above_the_exact_limit_are_near_the_exact_ones(monkeypatch):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 16))
    vectors = (centres[rng.integers(40, size=3000)] + 0.3 * rng.normal(size=(3000, 16))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = nearest_neighbours(vectors, 5)
    monkeypatch.setattr("recbole_rag.semantic.neighbours.EXACT_UP_TO", 1000)
    approximate = nearest_neighbours(vectors, 5)
    assert approximate.shape == (3000, 5) and (approximate >= 0).all()
    assert not (approximate == np.arange(3000)[:, None]).any()
    overlap = np.mean([len(set(a) & set(e)) / 5 for a, e in zip(approximate, exact)])
    assert overlap > 0.9
    assert np.array_equal(nearest_neighbours(vectors, 5, exact=True), exact)  # neighbour_search: exact


@pytest.mark.parametrize("intra_weight", [0.0, 0.5])
def test_a_separate_anchor_is_a_pass_of_its_own_for_the_cross_term(tiny, tmp_path, monkeypatch, intra_weight):
    vectors = _vector_file(tmp_path)
    settings = dict(semantic_embedding_file=vectors, cross_view="encode", intra_weight=intra_weight)
    _, model, trainer, train = _setup(tiny, **settings, cross_anchor="separate")
    trainer.prepare_semantics(train.dataset)
    batch = next(iter(train))
    forward, rows = model.forward, []

    def counting_forward(item_seq, item_seq_len):
        rows.append(len(item_seq))
        return forward(item_seq, item_seq_len)

    monkeypatch.setattr(model, "forward", counting_forward)
    model.eval()  # no dropout: the separate pass gives the shared anchor's values
    torch.manual_seed(0)  # the same substitutions in both calls
    separate = model.calculate_loss(batch)
    n = len(batch)
    assert rows == [n * (1 + (2 if intra_weight else 0) + 1 + model.user_k)]  # the anchor once more, one stacked pass
    model.separate_anchor = False
    rows.clear()
    torch.manual_seed(0)
    assert torch.allclose(model.calculate_loss(batch), separate)
    assert rows == [n * (1 + (2 if intra_weight else 0) + model.user_k)]


def test_prefix_retrieval_finds_the_nearest_other_training_prefixes(tiny, tmp_path):
    _, model, trainer, train = _setup(
        tiny, semantic_embedding_file=_vector_file(tmp_path), cross_retrieval="prefix", cross_view="encode"
    )
    semantics = trainer.prepare_semantics(train.dataset)
    feat = train.dataset.inter_feat
    n = len(feat)
    assert model.unit_neighbours.shape == (n, 3) and len(model.unit_seq) == n
    means = semantics.item_vectors[feat[model.ITEM_SEQ].numpy()].sum(1)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    similarity = means @ means.T
    np.fill_diagonal(similarity, -np.inf)
    best = similarity.max(1)
    chosen = similarity[np.arange(n), model.unit_neighbours[:, 0].numpy()]
    assert np.allclose(chosen, best, atol=1e-5)  # the nearest other prefix, never the row itself
    batch = next(iter(train))  # the training batches carry each row's prefix id
    rows = batch["sracl_prefix_id"]
    assert torch.equal(feat[model.ITEM_SEQ][rows], batch[model.ITEM_SEQ])
    model.train()
    model.calculate_loss(batch).backward()
    assert model.synthesis.score.grad.abs().sum() > 0


def test_substitution_uses_semantic_neighbours_at_the_configured_rate(tiny, tmp_path):
    _, model, trainer, train = _setup(tiny, semantic_embedding_file=_vector_file(tmp_path), substitute_rate=1.0)
    trainer.prepare_semantics(train.dataset)
    seq = next(iter(train))[model.ITEM_SEQ]
    swapped = model.substitute(seq)
    real = seq > 0
    assert (swapped[~real] == 0).all()
    assert (model.item_neighbours[seq[real]] == swapped[real][:, None]).any(1).all()
    assert not (model.item_neighbours[1:] == torch.arange(1, model.n_items)[:, None]).any()
    assert (model.item_neighbours[1:] > 0).all()  # padding is never a substitute (the authors' table allows it)
    model.substitute_rate = 0.0
    assert torch.equal(model.substitute(seq), seq)


@pytest.mark.parametrize(
    "backbone,cross_view,cross_retrieval",
    [("SASRec", "encode", "user"), ("GRU4Rec", "memory", "user"), ("SASRec", "memory", "prefix")],
)
def test_each_contrastive_term_trains_its_parts(tiny, tmp_path, backbone, cross_view, cross_retrieval):
    vectors = _vector_file(tmp_path)
    _, model, trainer, train = _setup(
        tiny, semantic_embedding_file=vectors, backbone=backbone, cross_view=cross_view, cross_retrieval=cross_retrieval
    )
    trainer.prepare_semantics(train.dataset)
    assert isinstance(model.encoder, GRUEncoder) == (backbone == "GRU4Rec")
    model.refresh_memory()
    batch = next(iter(train))
    model.train()
    model.calculate_loss(batch).backward()
    assert model.synthesis.score.grad.abs().sum() > 0  # the learnable synthesiser is trained
    model.zero_grad()
    model.eval()  # no dropout: with both weights 0 the loss is plain cross-entropy
    model.cross_weight = model.intra_weight = 0.0
    plain = model.calculate_loss(batch)
    logits = model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]) @ model.item_embedding.weight.T
    assert torch.allclose(plain, torch.nn.functional.cross_entropy(logits, batch[model.POS_ITEM_ID]))
    model.cross_weight = 0.5
    assert model.calculate_loss(batch) > plain
    model.cross_weight, model.intra_weight = 0.0, 0.5
    assert model.calculate_loss(batch) > plain


def test_each_loss_term_is_tallied_unweighted_for_the_epoch_log(tiny, tmp_path):
    _, model, trainer, train = _setup(
        tiny, semantic_embedding_file=_vector_file(tmp_path), cross_weight=0.0, intra_weight=0.5
    )
    trainer.prepare_semantics(train.dataset)
    batches = list(train)[:2]
    model.eval()
    ce = [
        torch.nn.functional.cross_entropy(
            model.forward(b[model.ITEM_SEQ], b[model.ITEM_SEQ_LEN]) @ model.item_embedding.weight.T,
            b[model.POS_ITEM_ID],
        ).item()
        for b in batches
    ]
    model.reset_terms()
    totals = [model.calculate_loss(b).item() for b in batches]
    terms = model.reset_terms()
    assert set(terms) == {"ce", "intra"}  # a term whose weight is 0 is not computed
    assert terms["ce"] == pytest.approx(np.mean(ce), rel=1e-5)
    assert np.mean(totals) == pytest.approx(terms["ce"] + 0.5 * terms["intra"], rel=1e-5)
    assert model.reset_terms() == {}


def test_file_and_categorical_sources_are_named_in_the_results(tiny, tmp_path):
    result = run_recbole_rag(
        "SRACL",
        "tiny",
        config_dict={**tiny, "epochs": 1, "user_k": 3, "semantic_embedding_file": _vector_file(tmp_path)},
    )
    assert result["semantic_source"].startswith("file: ") and result["semantic_texts_embedded"] == 0
    write_item_text(tiny)
    _, _, trainer, train = _setup(tiny, semantic_source="categorical")
    semantics = trainer.prepare_semantics(train.dataset)
    assert trainer.run_info["semantic_source"] == "categorical: movie_title, release_year, class"
    vector = {i: semantics.item_vectors[train.dataset.token2id("item_id", f"i{i}")] for i in (1, 2, 6)}
    assert vector[1] @ vector[6] > vector[1] @ vector[2]  # i1, i6: both "Comedy Drama"; i2 not


def test_a_dataset_without_item_text_stops_with_the_missing_fields(tiny):
    # conftest's tiny .item holds only a price
    with pytest.raises(DatasetError, match=r"no item text.*title.*it has: price.*semantic_source: categorical"):
        run_recbole_rag("SRACL", "tiny", config_dict=tiny)
    with pytest.raises(DatasetError, match="no token or token_seq field"):
        run_recbole_rag("SRACL", "tiny", config_dict={**tiny, "semantic_source": "categorical"})
    with pytest.raises(DatasetError, match="lacks"):
        run_recbole_rag("SRACL", "tiny", config_dict={**tiny, "semantic_text_fields": ["synopsis"]})


def test_a_cache_from_another_model_is_refused(texts, tmp_path):
    cache = tmp_path / "other.npz"
    embed.write_cache(str(cache), "some-other-model", {embed.text_hash("x"): np.ones(4, np.float32)})
    with pytest.raises(ConfigError, match="holds some-other-model vectors.*all-MiniLM-L6-v2"):
        run_recbole_rag("SRACL", "tiny", config_dict={**texts, "semantic_cache": str(cache)})


def test_pooling_replaces_the_model_folders_own_and_keys_the_cache(tmp_path):
    mean, _ = embed.embed_texts(["a red lipstick"], str(tmp_path / "mean.npz"))
    with pytest.raises(ConfigError, match=r"holds all-MiniLM-L6-v2 vectors.*all-MiniLM-L6-v2 \(cls pooling\)"):
        embed.embed_texts(["a red lipstick"], str(tmp_path / "mean.npz"), pooling="cls")
    cls, embedded = embed.embed_texts(["a red lipstick"], str(tmp_path / "cls.npz"), pooling="cls")
    assert embedded == 1 and cls.shape == mean.shape == (1, 384) and not np.allclose(cls, mean, atol=1e-3)
    assert np.allclose(np.linalg.norm(cls), 1, atol=1e-5)


def test_an_unreachable_llm_endpoint_stops_the_run(texts):
    llm = {"base_url": "http://127.0.0.1:9/v1", "model": "m", "timeout": 2}
    with pytest.raises(LLMError, match="127.0.0.1:9/v1/chat/completions failed"):
        run_recbole_rag("SRACL", "tiny", config_dict={**texts, "llm": llm})


def test_the_llm_client_speaks_the_openai_chat_protocol():
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, self.headers.get("Authorization"), body))
            answer = {"choices": [{"message": {"content": f" summary of {len(seen)} "}}]}
            self.send_response(200)
            self.end_headers()
            self.wfile.write(json.dumps(answer).encode())

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        writer = ChatWriter(f"http://127.0.0.1:{server.server_port}/v1", "m", timeout=5)
        assert writer.summarize_users(["likes A", "likes B"]) == ["summary of 1", "summary of 2"]
    finally:
        server.shutdown()
    assert seen[0][0] == "/v1/chat/completions" and seen[0][2]["model"] == "m"
    assert "likes A" in seen[0][2]["messages"][0]["content"]


def test_purchase_histories_come_from_training_rows_only(texts):
    _, model, _, train = _setup(texts)
    feat = train.dataset.inter_feat
    seqs, lengths, targets = feat[model.ITEM_SEQ], feat[model.ITEM_SEQ_LEN].tolist(), feat[model.POS_ITEM_ID].tolist()
    rows = [tuple(seqs[r, max(0, n - 10) : n].tolist() + [t]) for r, (n, t) in enumerate(zip(lengths, targets))]
    every = T.purchase_histories(feat, model.POS_ITEM_ID, model.ITEM_SEQ, model.ITEM_SEQ_LEN, per_item=10**6)
    assert sorted(tuple(h) for found in every.values() for h in found) == sorted(rows)  # no valid/test row
    capped = T.purchase_histories(feat, model.POS_ITEM_ID, model.ITEM_SEQ, model.ITEM_SEQ_LEN, per_item=2)
    assert all(len(found) <= 2 and all(h[-1] == item for h in found) for item, found in capped.items())
    assert capped == T.purchase_histories(feat, model.POS_ITEM_ID, model.ITEM_SEQ, model.ITEM_SEQ_LEN, per_item=2)


def test_prefix_texts_give_each_training_prefix_its_own_vector(texts, tmp_path, monkeypatch):
    embedded = []

    class FakeModel:  # a stand-in sentence model: records what it embeds, random vectors
        def encode(self, batch, **kwargs):
            embedded.extend(batch)
            return np.random.default_rng(len(embedded)).normal(size=(len(batch), 8)).astype(np.float32)

    monkeypatch.setattr(embed, "load_sentence_model", lambda name, pooling=None: FakeModel())
    _, model, trainer, train = _setup(
        texts,
        cross_retrieval="prefix",
        prefix_semantics="text",
        item_text_histories=2,
        semantic_cache=str(tmp_path / "cache.npz"),
    )
    semantics = trainer.prepare_semantics(train.dataset)
    feat = train.dataset.inter_feat
    n_items = model.n_items - 1
    assert semantics.prefix_vectors.shape == (len(feat), 8) and "prefixes: text" in semantics.source
    prefix_texts = [t for t in embedded if t.startswith("<")]  # the cache embeds in hash order
    item_texts = [t for t in embedded if not t.startswith("<")]
    assert len(item_texts) == n_items and len(prefix_texts) == len({t for t in prefix_texts})
    assert sum("Purchase histories ending in this item: [" in t for t in item_texts) == len(
        set(feat["item_id"].tolist())
    )
    tokens = train.dataset.field2id_token["item_id"]
    first = feat[model.ITEM_SEQ][0, : feat[model.ITEM_SEQ_LEN][0]].tolist()
    expected = "; ".join(f"<The {GENRES[int(tokens[i][1:]) % 5]} Story, part {tokens[i][1:]}>" for i in first)
    assert expected in prefix_texts  # a prefix's text: its items' names, in time order
    vectors = semantics.prefix_vectors / np.linalg.norm(semantics.prefix_vectors, axis=1, keepdims=True)
    assert np.allclose(model.unit_semantic.numpy(), vectors, atol=1e-6)  # retrieval reads the prefix texts


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"prefix_semantics": "llm"}, "prefix_semantics must be one of items, text"),
        ({"semantic_pooling": "first"}, "semantic_pooling must be one of cls, mean, max, lasttoken"),
        ({"item_text_histories": -1}, "item_text_histories must be an integer >= 0"),
        ({"item_text_histories": 2, "semantic_source": "categorical"}, "need semantic_source: text"),
        ({"backbone": "Caser"}, "backbone must be one of SASRec, GRU4Rec"),
        ({"cross_view": "both"}, "cross_view must be one of"),
        ({"cross_retrieval": "session"}, "cross_retrieval must be one of user, prefix"),
        ({"cross_anchor": "twice"}, "cross_anchor must be one of shared, separate"),
        ({"neighbour_search": "ivf"}, "neighbour_search must be one of auto, exact"),
        ({"position_from": "left"}, "position_from must be one of start, end"),
        ({"backbone": "GRU4Rec", "position_from": "end"}, "GRU4Rec reads no positions"),
        ({"substitute_rate": 1.5}, "substitute_rate must be in"),
        ({"user_k": 0}, "user_k must be > 0"),
        ({"synthesis_dropout": 1.0}, "synthesis_dropout must be in"),
        ({"sim": "euclidean"}, "sim must be dot or cos"),
        ({"semantic_source": "web"}, "semantic_source must be one of"),
        ({"user_semantics": "llm"}, "user_semantics must be one of"),
        ({"llm": "gpt"}, "llm must be a mapping"),
        ({"semantic_embedding_file": "missing.npz"}, "does not exist"),
        ({"semantic_model": "no-such-model"}, "neither all-MiniLM-L6-v2"),
    ],
)
def test_bad_settings_stop_before_training(texts, overrides, match):
    with pytest.raises(ConfigError, match=match):
        run_recbole_rag("SRACL", "tiny", config_dict={**texts, **overrides})


def test_registry_gives_the_sracl_trainer():
    assert get_trainer(None, "SRACL") is SRACLTrainer


def test_the_cache_keeps_every_chunk_and_embeds_only_new_texts(tmp_path, monkeypatch):
    calls = []

    class FakeModel:  # a stand-in sentence model: one-hot of the text's length
        def encode(self, texts, **kwargs):
            calls.append(list(texts))
            return np.eye(8, dtype=np.float32)[[len(t) % 8 for t in texts]]

    monkeypatch.setattr(embed, "load_sentence_model", lambda name, pooling=None: FakeModel())
    cache = str(tmp_path / "cache.npz")
    vectors, embedded = embed.embed_texts(["a", "bb", "a", "ccc"], cache, chunk_size=2)
    assert embedded == 3 and [len(c) for c in calls] == [2, 1]  # duplicates embedded once
    np.testing.assert_array_equal(vectors[0], vectors[2])
    vectors, embedded = embed.embed_texts(["ccc", "dddd"], cache)
    assert embedded == 1 and calls[-1] == ["dddd"]
    with np.load(cache) as saved:
        assert len(saved["hashes"]) == 4 and str(saved["model"]) == embed.DEFAULT_MODEL


def test_fit_trains_the_synthesiser_built_from_the_semantic_vectors(tiny, tmp_path):
    config, model, trainer, train = _setup(tiny, semantic_embedding_file=_vector_file(tmp_path, dim=8), epochs=1)
    assert model.synthesis is None
    trainer.fit(train, saved=False)
    assert model.synthesis.project.shape == (8, config["hidden_size"])
    assert any(p is model.synthesis.score for group in trainer.optimizer.param_groups for p in group["params"])
    assert model.synthesis.score.grad.abs().sum() > 0


def test_an_embedding_file_must_cover_every_item(tiny, tmp_path):
    from recbole_rag.semantic.build import vectors_from_file

    partial = tmp_path / "partial.npz"
    np.savez(partial, item_id=np.array([f"i{i}" for i in range(1, 30)]), embedding=np.ones((29, 4)))
    _, _, trainer, train = _setup(tiny, semantic_embedding_file=str(partial))
    with pytest.raises(DatasetError, match="no vector for 1 items, e.g. i30"):
        trainer.prepare_semantics(train.dataset)
    by_row = tmp_path / "by_row.npy"
    np.save(by_row, np.arange(12, dtype=np.float32).reshape(4, 3))  # row r = item id r
    vectors = vectors_from_file(str(by_row), ["[PAD]", "3", "1"])
    np.testing.assert_allclose(vectors[1] * np.linalg.norm([9, 10, 11]), [9, 10, 11], rtol=1e-5)
    assert not vectors[0].any()


def test_an_interrupted_run_resumes_from_its_checkpoint(texts):
    settings = {**texts, "semantic_source": "categorical", "user_k": 3}
    first = run_recbole_rag("SRACL", "tiny", config_dict={**settings, "epochs": 1})
    resume = {**settings, "epochs": 3, "resume_path": first["saved_model_file"]}
    again = run_recbole_rag("SRACL", "tiny", config_dict=resume)
    assert again["epochs_run"] == 2  # epochs 1 and 2; epoch 0 came from the checkpoint
    assert again["saved_model_file"] == first["saved_model_file"]  # the run goes on in its own file
    # resumed at its last epoch, nothing is left to train: the weights are the checkpoint's
    config, model, trainer, train = _setup(
        texts, semantic_source="categorical", epochs=1, resume_path=first["saved_model_file"]
    )
    trainer.fit(train, saved=False)
    saved = load_checkpoint(first["saved_model_file"])["state_dict"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_resume_refuses_another_models_or_shapes_checkpoint(texts):
    settings = {**texts, "semantic_source": "categorical", "user_k": 3, "epochs": 1}
    duorec = run_recbole_rag("DuoRec", "tiny", config_dict=settings)
    with pytest.raises(CheckpointError, match="saved by model DuoRec, not SRACL"):
        run_recbole_rag("SRACL", "tiny", config_dict={**settings, "resume_path": duorec["saved_model_file"]})
    own = run_recbole_rag("SRACL", "tiny", config_dict=settings)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        run_recbole_rag(
            "SRACL", "tiny", config_dict={**settings, "hidden_size": 32, "resume_path": own["saved_model_file"]}
        )


def test_gru_encoder_computes_recbole_gru4rec(tiny):
    from recbole.model.sequential_recommender import GRU4Rec

    config = Config("GRU4Rec", "tiny", config_dict=tiny)
    train, _, _ = data_preparation(config, load_dataset(config))
    theirs = GRU4Rec(config, train.dataset).eval()
    ours = GRUEncoder(theirs.n_items, config["embedding_size"], config["hidden_size"], config["num_layers"]).eval()
    ours.load_state_dict({k.replace("gru_layers.", "gru."): v for k, v in theirs.state_dict().items()})
    batch = next(iter(train))
    seq, lengths = batch["item_id_list"], batch["item_length"]
    assert torch.allclose(ours(seq, lengths), theirs.forward(seq, lengths), atol=1e-6)


def test_anchored_contrast_queries_only_the_anchors():
    anchor, positive = torch.randn(6, 4), torch.randn(6, 4)
    rows = []
    for b in range(6):
        others = torch.cat([anchor[:b], anchor[b + 1 :]])
        logits = torch.cat([positive @ anchor[b], others @ anchor[b]])  # target: positive b
        rows.append(torch.logsumexp(logits, 0) - logits[b])
    assert torch.allclose(anchored_info_nce(anchor, positive, 1.0), torch.stack(rows).mean())
    assert not torch.allclose(info_nce(anchor, positive, 1.0), torch.stack(rows).mean())  # not the symmetric form


@pytest.mark.parametrize("contrast", [info_nce, anchored_info_nce])
def test_cosine_contrast_cannot_be_lowered_by_vector_length(contrast):
    anchor, positive = torch.randn(8, 4), torch.randn(8, 4)
    cos = contrast(anchor, positive, 0.1, "cos")
    assert torch.allclose(contrast(3 * anchor, 0.5 * positive, 0.1, "cos"), cos)
    assert not torch.allclose(contrast(3 * anchor, 0.5 * positive, 0.1, "dot"), contrast(anchor, positive, 0.1, "dot"))


def test_prefix_retrieval_embeds_no_user_texts(texts, tmp_path, monkeypatch):
    embedded = []

    class FakeModel:  # a stand-in sentence model: records what it is asked to embed
        def encode(self, batch, **kwargs):
            embedded.extend(batch)
            return np.random.default_rng(len(embedded)).normal(size=(len(batch), 8)).astype(np.float32)

    monkeypatch.setattr(embed, "load_sentence_model", lambda name, pooling=None: FakeModel())
    _, model, trainer, train = _setup(
        texts, cross_retrieval="prefix", user_semantics="text", semantic_cache=str(tmp_path / "prefix-cache.npz")
    )
    semantics = trainer.prepare_semantics(train.dataset)
    assert len(embedded) == model.n_items - 1  # item texts only: prefixes never read user vectors
    assert "users: items" in semantics.source
    assert semantics.source.endswith("; cache prefix-cache.npz")  # relative to the working folder (tmp_path)


def test_positions_from_the_end_reach_the_sasrec_backbone(tiny):
    _, model, _, _ = _setup(tiny, position_from="end")
    assert model.encoder.from_end
    _, model, _, _ = _setup(tiny)
    assert not model.encoder.from_end  # RecBole's positions by default
