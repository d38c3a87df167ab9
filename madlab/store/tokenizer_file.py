"""The tokenizer of a text run, stored in its folder so the folder alone decodes its samples."""
from __future__ import annotations

import json

from madlab.core.errors import ConfigError
from madlab.core.tokenizer import Tokenizer
from madlab.datasets import get_dataset_class, open_dataset
from madlab.store.storage import TOKENIZER, run_folder

TOKENIZER_FILE = TOKENIZER


def check_stored_tokenizer(location, tokenizer: Tokenizer) -> bool:
    """Whether ``location`` (a run folder) holds a ``tokenizer.json``; a ConfigError if it is not ``tokenizer``'s.

    Resuming with another tokenizer (the corpus files or a pretrained tokenizer changed underneath the
    same config) would mix token ids of two vocabularies in one run: refused, naming the file.
    """
    if not location.exists(TOKENIZER_FILE):
        return False
    stored = location.read_bytes(TOKENIZER_FILE).decode()
    if stored != tokenizer.to_json():
        try:
            old = Tokenizer.from_json(stored)
            was = f"{old.kind}, {old.vocab_size} tokens"
        except (ValueError, KeyError, TypeError):
            was = "unreadable"
        raise ConfigError(f"{location.join(TOKENIZER_FILE)}: the run was started with another tokenizer "
                          f"({was}; now {tokenizer.kind}, {tokenizer.vocab_size}): the corpus or tokenizer "
                          f"changed; use a new --out folder")
    return True


def store_tokenizer(store, tokenizer: Tokenizer, *, resumed: bool) -> None:
    """Write ``tokenizer.json`` into the run folder, or check that a resumed run's one is the same."""
    location = store.location
    if check_stored_tokenizer(location, tokenizer):
        return
    if resumed:
        raise ConfigError(f"{location.join(TOKENIZER_FILE)}: missing from a run with finished generations")
    location.makedirs()
    location.write_bytes(TOKENIZER_FILE, tokenizer.to_json().encode())


def check_resumed_tokenizers(jobs, location) -> None:
    """Before a sweep resumes into ``location``: every text run folder's stored tokenizer is the one its
    config builds now (each distinct dataset opened once, only where a run folder holds a tokenizer)."""
    opened: dict[str, Tokenizer] = {}
    for job in jobs:
        section = job.config["dataset"]
        cls = get_dataset_class(section["name"])
        if cls.kind != "tokens" or not location.exists(f"{run_folder(job.run_id)}/{TOKENIZER_FILE}"):
            continue
        key = json.dumps(section, sort_keys=True)
        if key not in opened:
            opened[key] = open_dataset(section).tokenizer
        check_stored_tokenizer(location.child(run_folder(job.run_id)), opened[key])


def load_tokenizer(store) -> Tokenizer:
    return Tokenizer.from_json(store.location.read_bytes(TOKENIZER_FILE).decode())
