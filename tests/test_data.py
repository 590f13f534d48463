import pytest
import torch

from dyntie_core import DataConfig
from dyntie_core.data import (
    BatchSampler,
    CharTokenizer,
    DataError,
    corpus_from_hf,
    eval_windows,
    load_corpus,
    load_data,
    split_90_5_5,
    tokenize,
    train_bpe,
)


def test_pydoc_corpus_is_offline_english_prose():
    corpus = load_corpus("pydoc")
    total = len(corpus.train) + len(corpus.valid) + len(corpus.test)
    assert total > 300_000
    assert len(corpus.train) / total == pytest.approx(0.90, abs=0.01)
    assert "the" in corpus.train and corpus.notices == []


def test_split_is_90_5_5_at_line_boundaries():
    text = "".join(f"line {i}\n" for i in range(1000))
    train, valid, test = split_90_5_5(text)
    assert train + valid + test == text
    assert train.endswith("\n") and valid.endswith("\n")
    assert len(train) / len(text) == pytest.approx(0.9, abs=0.01)
    assert len(valid) == pytest.approx(len(test), rel=0.05)


def test_local_file_and_errors(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("".join(f"sentence number {i}.\n" for i in range(500)), encoding="utf-8")
    corpus = load_corpus(str(good))
    assert corpus.name == "good" and "90/5/5" in corpus.notices[0]
    with pytest.raises(DataError, match="does not exist"):
        load_corpus(str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        load_corpus(str(empty))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1") * 10)
    with pytest.raises(DataError, match="not UTF-8.*offset 3"):
        load_corpus(str(latin))
    with pytest.raises(DataError, match="unknown dataset"):
        load_corpus("no-such-dataset")


def test_corpus_shorter_than_a_block_is_refused(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("abc\n" * 30, encoding="utf-8")
    corpus = load_corpus(str(short))
    with pytest.raises(DataError, match="fewer than one block"):
        tokenize(corpus, CharTokenizer.from_corpus(corpus), block_size=64)


def test_directory_with_missing_splits_says_what_it_derived(tmp_path):
    (tmp_path / "valid.txt").write_text("".join(f"v{i}\n" for i in range(1000)), encoding="utf-8")
    (tmp_path / "test.txt").write_text("".join(f"t{i}\n" for i in range(100)), encoding="utf-8")
    corpus = load_corpus(str(tmp_path))
    assert corpus.train.startswith("v0\n") and corpus.valid.startswith("v9")
    assert corpus.test.startswith("t0\n")
    assert any("no train split" in n for n in corpus.notices)
    only_train = tmp_path / "only_train"
    only_train.mkdir()
    (only_train / "train.txt").write_text("".join(f"x{i}\n" for i in range(1000)), encoding="utf-8")
    corpus = load_corpus(str(only_train))
    assert len(corpus.notices) == 2 and corpus.valid and corpus.test
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(DataError, match="no split files"):
        load_corpus(str(empty))


def test_wikitext_local_copy(shared_data):
    corpus = load_corpus(str(shared_data / "wikitext-2" / "raw"))
    assert corpus.train.startswith(" \n = Homarus gammarus")
    assert corpus.test == (shared_data / "wikitext-2" / "raw" / "test.txt").read_text(encoding="utf-8")
    assert any("first 90% of the validation file" in n for n in corpus.notices)


def test_hub_names_fail_fast_offline_with_alternatives(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="pydoc.*local .txt file"):
        load_corpus("wikitext-2")


def test_hf_datasets_loading_code_on_local_files(shared_data):
    datasets = pytest.importorskip("datasets")
    wt = shared_data / "wikitext-2" / "raw"
    ds = datasets.load_dataset("text", data_files={"train": str(wt / "valid.txt"), "test": str(wt / "test.txt")},
                               keep_linebreaks=True)
    corpus = corpus_from_hf(ds, "wikitext-2-local")
    assert corpus.test == (wt / "test.txt").read_text(encoding="utf-8")
    assert corpus.train + corpus.valid == (wt / "valid.txt").read_text(encoding="utf-8")
    assert any("no validation split" in n for n in corpus.notices)


def test_char_tokenizer_round_trip(pydoc_chars):
    tok = pydoc_chars.tokenizer
    text = "def f(x):\n    return x"
    assert tok.decode(tok.encode(text)) == text
    with pytest.raises(DataError, match="not in the char vocabulary"):
        tok.encode("\u2603")


def test_bpe_is_trained_on_train_and_cached(tmp_path, shared_data):
    corpus = load_corpus(str(shared_data / "tinyshakespeare" / "input.txt"))
    tok = train_bpe(corpus, 512, tmp_path)
    files = list(tmp_path.glob("bpe-*-512.json"))
    assert len(files) == 1 and tok.vocab_size == 512
    text = corpus.valid[:2000]
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert len(ids) < len(text) / 1.5  # BPE compresses
    mtime = files[0].stat().st_mtime_ns
    again = train_bpe(corpus, 512, tmp_path)
    assert files[0].stat().st_mtime_ns == mtime and again.encode(text) == ids
    files[0].write_text("not json", encoding="utf-8")  # a corrupt cache entry is rebuilt
    assert train_bpe(corpus, 512, tmp_path).encode(text) == ids
    tampered = files[0].read_text().replace('"e":', '"ee":', 1)  # still a valid tokenizer JSON, other ids
    files[0].write_text(tampered, encoding="utf-8")
    assert train_bpe(corpus, 512, tmp_path).encode(text) == ids  # caught by its hash and rebuilt
    assert files[0].read_text() != tampered


def test_load_data_sets_vocab_from_tokenizer(tmp_path):
    data = load_data(DataConfig(dataset="pydoc", tokenizer="char", cache_dir=str(tmp_path)), block_size=32)
    assert data.vocab_size == data.tokenizer.vocab_size > 60
    assert data.train.dtype == torch.uint16 and int(data.train.long().max()) < data.vocab_size  # from the token cache


def test_batches_are_shifted_and_reproducible(pydoc_chars):
    a = BatchSampler(pydoc_chars.train, 4, 32, seed=5)
    b = BatchSampler(pydoc_chars.train, 4, 32, seed=5)
    x, y = a.sample()
    assert torch.equal(x, b.sample()[0])
    assert torch.equal(x[:, 1:], y[:, :-1])
    state = a.state()
    nxt = a.sample()[0]
    a.set_state(state)
    assert torch.equal(a.sample()[0], nxt)


def test_eval_windows_are_contiguous_and_capped(pydoc_chars):
    tokens = pydoc_chars.valid
    windows = list(eval_windows(tokens, 32, 8, max_tokens=32 * 20))
    xs = torch.cat([x for x, _ in windows])
    assert xs.shape == (20, 32)
    assert torch.equal(xs.reshape(-1), tokens[: 20 * 32])


# GPT-2's ids for these strings, as GPT-2's own encoder (and tiktoken's "gpt2") gives them
GPT2_KNOWN_IDS = {
    "Hello world": [15496, 995],
    " the": [262],
    "GPT-2 is a language model.": [38, 11571, 12, 17, 318, 257, 3303, 2746, 13],
    "<|endoftext|>": [50256],
}


def test_gpt2_tokenizer_from_the_released_files_gives_gpt2_ids(shared_data, tmp_path, monkeypatch):
    from dyntie_core.data import build_tokenizer, gpt2_tokenizer, load_corpus

    tok = gpt2_tokenizer(str(shared_data / "gpt2"))
    assert tok.vocab_size == 50257 and tok.name == "gpt2"
    for text, ids in GPT2_KNOWN_IDS.items():
        assert tok.encode(text) == ids, text
    assert tok.decode(tok.encode("  indented\n\nnew lines")) == "  indented\n\nnew lines"
    # HF's file names, a saved tokenizer.json, and the environment variable all lead to the same ids
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "vocab.json").write_bytes((shared_data / "gpt2" / "encoder.json").read_bytes())
    (hf / "merges.txt").write_bytes((shared_data / "gpt2" / "vocab.bpe").read_bytes())
    assert gpt2_tokenizer(str(hf)).encode("Hello world") == [15496, 995]
    tok.save(tmp_path / "tokenizer.json")
    assert gpt2_tokenizer(str(tmp_path / "tokenizer.json")).encode("Hello world") == [15496, 995]
    monkeypatch.setenv("DYNTIE_GPT2_TOKENIZER", str(shared_data / "gpt2"))
    corpus = load_corpus("pydoc")
    assert build_tokenizer(corpus, DataConfig(tokenizer="gpt2")).encode(" the") == [262]


def test_gpt2_tokenizer_missing_files_say_where_to_look(tmp_path, monkeypatch):
    from dyntie_core.data import DataError, gpt2_tokenizer

    monkeypatch.delenv("DYNTIE_GPT2_TOKENIZER", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="no GPT-2 vocabulary in"):
        gpt2_tokenizer(str(tmp_path))
    with pytest.raises(DataError, match="encoder.json \\+ vocab.bpe"):
        gpt2_tokenizer(None)


def test_token_cache_is_memory_mapped_reused_and_rebuilt_when_damaged(tmp_path):
    from dyntie_core.data import CharTokenizer, load_corpus, sample_windows, tokenize

    corpus = load_corpus("pydoc")
    tok = CharTokenizer.from_corpus(corpus)
    plain = tokenize(corpus, tok, 32)
    cached = tokenize(corpus, tok, 32, cache_dir=tmp_path)
    files = sorted(p.name for p in tmp_path.glob("tokens-*.bin"))
    assert len(files) == 3 and cached.train.dtype == torch.uint16  # 2 bytes a token for a small vocabulary
    assert torch.equal(cached.train.long(), plain.train) and torch.equal(cached.test.long(), plain.test)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x1, y1 = sample_windows(cached.train, 4, 32, g1)
    x2, y2 = sample_windows(plain.train, 4, 32, g2)
    assert x1.dtype == torch.long and torch.equal(x1, x2) and torch.equal(y1, y2)

    class Counting(CharTokenizer):
        calls = 0

        def encode(self, text):
            Counting.calls += 1
            return super().encode(text)

    counting = Counting(tok.chars)
    tokenize(corpus, counting, 32, cache_dir=tmp_path)
    assert Counting.calls == 0  # reused: no split was encoded again
    victim = next(tmp_path.glob("tokens-*-train.bin"))
    data = bytearray(victim.read_bytes())
    data[10] ^= 0xFF
    victim.write_bytes(bytes(data))
    again = tokenize(corpus, counting, 32, cache_dir=tmp_path)
    assert Counting.calls == 1 and torch.equal(again.train.long(), plain.train)  # detected by its hash, rebuilt
