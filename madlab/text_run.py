"""The tokenizer of a text run, stored in its folder so the folder alone decodes its samples."""
from __future__ import annotations

from madlab.errors import ConfigError
from madlab.tokenizer import Tokenizer

TOKENIZER_FILE = "tokenizer.json"


def store_tokenizer(store, tokenizer: Tokenizer, *, resumed: bool) -> None:
    """Write ``tokenizer.json`` into the run folder, or check that a resumed run's one is the same.

    Resuming with another tokenizer (the corpus files or tokenizer options changed underneath the
    same config) would mix token ids of two vocabularies in one run: refused, naming the file.
    """
    location = store.location
    text = tokenizer.to_json()
    if location.exists(TOKENIZER_FILE):
        stored = location.read_bytes(TOKENIZER_FILE).decode()
        if stored != text:
            old = Tokenizer.from_json(stored)
            raise ConfigError(f"{location.join(TOKENIZER_FILE)}: the run was started with another tokenizer "
                              f"({old.kind}, {old.vocab_size} tokens; now {tokenizer.kind}, {tokenizer.vocab_size}): "
                              f"the corpus changed; use a new --out folder")
        return
    if resumed:
        raise ConfigError(f"{location.join(TOKENIZER_FILE)}: missing from a run with finished generations")
    location.makedirs()
    location.write_bytes(TOKENIZER_FILE, text.encode())


def load_tokenizer(store) -> Tokenizer:
    return Tokenizer.from_json(store.location.read_bytes(TOKENIZER_FILE).decode())
