"""The corpus tokenizer: the Rust tokenizer's ids directly, equal to the Hugging Face call's."""

from __future__ import annotations

import logging
import pickle

from embtune.encoders import load_encoder
from embtune.encoders.tokenize import CHECK_TEXTS, CorpusTokenizer

TEXTS = ["a man is playing the guitar.", "", "two dogs run in the park with their ball", "xyz qqq ?!",
         " ".join(["the old man"] * 40)] * 30  # over CHECK_TEXTS, with an empty text and one to truncate


def test_same_ids_as_the_hugging_face_call(tiny_bert):
    enc = load_encoder(str(tiny_bert), device="cpu")
    ct = CorpusTokenizer(enc.tokenizer)
    for max_length in (8, 32):
        want = enc.tokenizer(TEXTS, truncation=True, max_length=max_length)["input_ids"]
        assert ct.ids(TEXTS, max_length) == want
    assert ct._trusted is True
    assert max(map(len, ct.ids(TEXTS, 8))) == 8  # truncated, [SEP] kept
    assert ct.ids(TEXTS, 8)[4][-1] == enc.tokenizer.sep_token_id


def test_the_rust_tokenizer_is_a_configured_copy(tiny_bert):
    enc = load_encoder(str(tiny_bert), device="cpu")
    ct = CorpusTokenizer(enc.tokenizer)
    ct.ids(TEXTS, 8)
    backend = ct._backend(8)
    assert backend is not enc.tokenizer._tokenizer and backend.truncation["max_length"] == 8
    assert ct._backend(16).truncation["max_length"] == 16 and ct._backend(8) is backend
    assert max(map(len, enc.tokenizer(TEXTS)["input_ids"])) > 8  # the user's tokenizer: not truncated by ours


def test_left_truncation_is_honoured_also_when_switched_after_first_use(tiny_bert):
    enc = load_encoder(str(tiny_bert), device="cpu")
    ct = CorpusTokenizer(enc.tokenizer)
    right = ct.ids(TEXTS, 8)
    enc.tokenizer.truncation_side = "left"
    want = enc.tokenizer(TEXTS, truncation=True, max_length=8)["input_ids"]
    assert ct.ids(TEXTS, 8) == want != right


def test_a_disagreeing_rust_path_falls_back_to_the_hugging_face_call(tiny_bert, caplog):
    enc = load_encoder(str(tiny_bert), device="cpu")
    ct = CorpusTokenizer(enc.tokenizer)
    ct.rust_ids = lambda backend, texts: [[0] for _ in texts]  # negative control: a path that prepares text otherwise
    with caplog.at_level(logging.INFO):
        got = ct.ids(TEXTS, 16)
    assert got == enc.tokenizer(TEXTS, truncation=True, max_length=16)["input_ids"]
    assert ct._trusted is False and "differ" in caplog.text
    assert len(TEXTS) > CHECK_TEXTS


def test_encoder_tokenize_ids_uses_it_and_pickles(tiny_bert):
    enc = load_encoder(str(tiny_bert), device="cpu")
    ids = enc.tokenize_ids(TEXTS, max_length=16)
    assert enc.__dict__["_corpus_tokenizer"]._trusted is True
    assert ids == enc.tokenizer([t.lower() for t in TEXTS], truncation=True, max_length=16)["input_ids"]
    clone = pickle.loads(pickle.dumps(enc))
    assert "_corpus_tokenizer" not in clone.__dict__
    assert clone.tokenize_ids(TEXTS, max_length=16) == ids


def test_trust_needs_check_texts_compared_over_calls(tiny_bert):
    enc = load_encoder(str(tiny_bert), device="cpu")
    ct = CorpusTokenizer(enc.tokenizer)
    ct.ids(TEXTS[:2], 16)
    assert ct._trusted is None and ct._checked == 2  # a 2-text first call does not settle it
    ct.ids(TEXTS, 16)
    assert ct._trusted is True and ct._checked == CHECK_TEXTS


def test_split_special_tokens_and_in_place_changes_are_followed(tiny_bert):
    enc = load_encoder(str(tiny_bert), device="cpu")
    tok = enc.tokenizer
    ct = CorpusTokenizer(tok)
    texts = ["a man [SEP] plays the piano", "newword is here"] * 40
    assert ct.ids(texts, 16) == tok(texts, truncation=True, max_length=16)["input_ids"]
    tok.split_special_tokens = True  # "[SEP]" in a text is then split, not the special token
    want = tok(texts, truncation=True, max_length=16)["input_ids"]
    assert ct.ids(texts, 16) == want and want[0].count(tok.sep_token_id) == 1
    tok.add_tokens(["newword"])  # a token added after the first call
    want = tok(texts, truncation=True, max_length=16)["input_ids"]
    assert ct.ids(texts, 16) == want and len(tok) - 1 in want[1]
    for n in range(6, 14):
        ct.ids(texts[:4], n)
    assert len(ct._rust) <= 4  # copies are capped


def test_an_uncopyable_rust_tokenizer_uses_the_hugging_face_call(tiny_bert, monkeypatch):
    import embtune.encoders.tokenize as tk

    enc = load_encoder(str(tiny_bert), device="cpu")

    def refuse(_):
        raise Exception("Custom PreTokenizer cannot be serialized")

    monkeypatch.setattr(tk.copy, "deepcopy", refuse)
    ct = CorpusTokenizer(enc.tokenizer)
    called = []
    ct.rust_ids = lambda backend, texts: called.append(1) or []
    assert ct.ids(TEXTS, 8) == enc.tokenizer(TEXTS, truncation=True, max_length=8)["input_ids"]
    assert not called
