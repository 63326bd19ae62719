"""Item and user texts for SRA-CL, read from the dataset's raw ``.item`` file.

The file is read here with the csv module, not through RecBole, so titles stay free text (RecBole
splits a ``token_seq`` field into tokens). Item ids are RecBole's internal ids: row ``i`` of every
list or matrix below is the item whose internal id is ``i`` (row 0, the padding item, is empty).
"""

import csv
import os
import random
import re
from collections import Counter

from recbole_rag.errors import DatasetError

# Fields read as item text when the config names none, in the file's order where present:
# ml-100k (movie_title, release_year, class), Amazon (title, brand, categories), and common others.
TEXT_FIELDS = (
    "title",
    "movie_title",
    "name",
    "brand",
    "categories",
    "class",
    "genre",
    "genres",
    "release_year",
    "description",
)
# Among those, fields whose values are short labels worth counting in a user's history.
LABEL_TYPES = ("token", "token_seq")


def item_file_path(config):
    """``<data_path>/<dataset>/<dataset>.item`` (RecBole's config already joins the dataset)."""
    return os.path.join(config["data_path"], f"{config['dataset']}.item")


def read_item_file(path):
    """``.item`` atomic file -> (fields as [(name, type)], {item token: {field: raw value}})."""
    if not os.path.isfile(path):
        raise DatasetError(
            f"No item file at '{path}': SRA-CL reads item text from it. Add one (item_id:token plus "
            "text fields such as title:token_seq), or give precomputed vectors with semantic_embedding_file."
        )
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, [])
        fields = [tuple(column.split(":", 1)) if ":" in column else (column, "token") for column in header]
        if not fields:
            raise DatasetError(f"Item file '{path}' is empty.")
        names = [name for name, _ in fields]
        rows = {row[0]: dict(zip(names, row)) for row in reader if row}
    return fields, rows


def clean(value):
    """Strip the list quoting of Amazon category fields ("'Beauty', 'Makeup'" -> "Beauty, Makeup")."""
    return " ".join(re.sub(r"(^|,\s*)['\"]|['\"](?=\s*,|\s*$)", r"\1", value).split())


def labels(value):
    """A label field's values: comma-separated where it has commas, else space-separated."""
    return [v.strip() for v in clean(value).split("," if "," in value else None) if v.strip()]


def choose_text_fields(fields, wanted, path):
    """The text fields to read: ``wanted`` (checked) or the known ones present; an error if none."""
    present = [name for name, _ in fields[1:]]
    if wanted:
        missing = [name for name in wanted if name not in present]
        if missing:
            raise DatasetError(
                f"semantic_text_fields names {', '.join(missing)}, which '{path}' lacks; it has: "
                f"{', '.join(present) or 'no fields besides the item id'}."
            )
        return list(wanted)
    chosen = [name for name in present if name in TEXT_FIELDS]
    if not chosen:
        raise DatasetError(
            f"'{path}' has no item text: none of the fields {', '.join(TEXT_FIELDS)} (it has: "
            f"{', '.join(present) or 'no fields besides the item id'}). Set semantic_text_fields to the "
            "fields to read, semantic_source: categorical to use its categorical attributes, or "
            "semantic_embedding_file to give item vectors."
        )
    return chosen


def item_texts(rows, tokens, text_fields):
    """One text per internal item id, e.g. "movie title: Toy Story. release year: 1995. class:
    Animation Children's Comedy."; returns (texts, number of items missing from the file)."""
    texts, missing = [""], 0
    for token in tokens[1:]:
        row = rows.get(token)
        missing += row is None
        parts = [
            f"{name.replace('_', ' ')}: {clean(row[name])}" for name in text_fields if row and clean(row.get(name, ""))
        ]
        texts.append(". ".join(parts) + "." if parts else f"item {token}.")
    return texts, missing


def user_histories(train_dataset, user_field, item_field, seq_field, len_field):
    """{internal user id: training items in time order}: each user's longest training prefix plus
    its target, i.e. every training interaction (valid and test items never enter)."""
    feat = train_dataset.inter_feat
    users, targets = feat[user_field].tolist(), feat[item_field].tolist()
    seqs, lengths = feat[seq_field], feat[len_field].tolist()
    longest = {}
    for row, (user, length) in enumerate(zip(users, lengths)):
        if user not in longest or length > lengths[longest[user]]:
            longest[user] = row
    return {user: seqs[row, : lengths[row]].tolist() + [targets[row]] for user, row in longest.items()}


def user_text(history, rows, tokens, text_fields, label_fields, recent=20):
    """Offline stand-in for the paper's LLM preference summary: the most frequent values of the
    label fields, then the most recent items' first text field, most recent first (in this order
    because the sentence model truncates long texts)."""
    parts = []
    for field in label_fields:
        counts = Counter(v for item in history for v in labels(rows.get(tokens[item], {}).get(field, "")))
        if counts:
            parts.append(f"Frequent {field.replace('_', ' ')}: " + ", ".join(v for v, _ in counts.most_common(3)))
    recent_items = [rows.get(tokens[i], {}) for i in reversed(history[-recent:])]
    names = [clean(r.get(text_fields[0], "")) for r in recent_items]
    parts.append("Recent items: " + "; ".join(n for n in names if n))
    return ". ".join(parts) + "."


def purchase_histories(train_feat, item_field, seq_field, len_field, per_item, length=10, seed=0):
    """{item: up to ``per_item`` training histories ending in it}, each the item and the ``length``
    items before it, from the training rows only (a valid or test item never appears); an item
    with more histories keeps a random ``per_item`` of them (fixed ``seed``, as the authors' code)."""
    seqs, lengths, targets = train_feat[seq_field], train_feat[len_field].tolist(), train_feat[item_field].tolist()
    found = {}
    for row, (target, n) in enumerate(zip(targets, lengths)):
        found.setdefault(target, []).append(seqs[row, max(0, n - length) : n].tolist() + [target])
    rng = random.Random(seed)
    return {item: (rng.sample(h, per_item) if len(h) > per_item else h) for item, h in sorted(found.items())}


def with_histories(texts, histories, rows, tokens, name_field):
    """Item texts followed by their co-purchase histories as the authors' prompt gives them to the
    LLM: each history the items' names in time order, "[a -> b -> this item]", separated by "#"."""

    def name(item):
        return clean(rows.get(tokens[item], {}).get(name_field, "")) or f"item {tokens[item]}"

    out = list(texts)
    for item, found in histories.items():
        rendered = " # ".join("[" + " -> ".join(name(i) for i in history) + "]" for history in found)
        out[item] = f"{out[item]} Purchase histories ending in this item: {rendered}."
    return out


def prefix_text(prefix, rows, tokens, name_field):
    """A training prefix as the authors give it to the LLM to summarise: its items' names in time
    order, "<a>; <b>; ..."."""
    return "; ".join(f"<{clean(rows.get(tokens[i], {}).get(name_field, '')) or 'item ' + tokens[i]}>" for i in prefix)


def label_fields(fields, text_fields):
    """Text fields after the first (the name-like one) whose values are labels to count."""
    types = dict(fields)
    return [name for name in text_fields[1:] if types.get(name) in LABEL_TYPES]


def categorical_fields(fields, path):
    """token / token_seq fields besides the item id, for the categorical fallback."""
    chosen = [name for name, kind in fields[1:] if kind in LABEL_TYPES]
    if not chosen:
        raise DatasetError(
            f"semantic_source is categorical, but '{path}' has no token or token_seq field besides the "
            f"item id (it has: {', '.join(n for n, _ in fields[1:]) or 'none'})."
        )
    return chosen
