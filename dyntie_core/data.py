"""Corpus -> tokenizer -> token splits -> batches.

Datasets: ``pydoc`` (the text of Python's bundled documentation, present on every
CPython install, so the default works offline), a local path (a ``.txt`` file split
90/5/5 at line boundaries, or a directory of train/valid/test files), or a hub name
loaded with Hugging Face ``datasets`` (needs network access to the hub).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from .config import DataConfig
from .fileio import atomic_path, write_json, write_text_atomic


class DataError(ValueError):
    """The dataset or tokenizer cannot be used as asked; the message says why and what to do."""


# name -> (hub repository, config, text column, revision). Current `datasets` refuses repositories that are
# loading scripts; for those the hub's parquet conversion (revision "refs/convert/parquet") loads instead.
HUB_DATASETS: dict[str, tuple[str, str | None, str, str | None]] = {
    "wikitext-2": ("Salesforce/wikitext", "wikitext-2-raw-v1", "text", None),
    "wikitext-103": ("Salesforce/wikitext", "wikitext-103-raw-v1", "text", None),
    "lambada": ("cimec/lambada", "plain_text", "text", "refs/convert/parquet"),
    "lm1b": ("billion-word-benchmark/lm1b", "plain_text", "text", "refs/convert/parquet"),
    "tiny-shakespeare": ("karpathy/tiny_shakespeare", "default", "text", "refs/convert/parquet"),
}
OFFLINE_ALTERNATIVES = (
    "offline alternatives: --dataset pydoc (bundled with Python), a local .txt file (split 90/5/5), "
    "or a directory with train/valid/test text files (e.g. ../shared/data/wikitext-2/raw, "
    "../shared/data/tinyshakespeare/input.txt)"
)
SPLIT_FILES = {
    "train": ("train.txt", "wiki.train.tokens", "wiki.train.raw", "train"),
    "valid": ("valid.txt", "validation.txt", "val.txt", "wiki.valid.tokens", "wiki.valid.raw", "valid"),
    "test": ("test.txt", "wiki.test.tokens", "wiki.test.raw", "test"),
}
SPLITS = ("train", "valid", "test")


@dataclass
class Corpus:
    """Raw text of the three splits, with notices about anything derived rather than given."""

    name: str
    train: str
    valid: str
    test: str
    notices: list[str] = field(default_factory=list)

    def split(self, name: str) -> str:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for text in (self.train, self.valid, self.test):
            h.update(text.encode("utf-8"))
            h.update(b"\x00")
        return h.hexdigest()


def _cut(text: str, fraction: float) -> tuple[str, str]:
    """Split text at the first line break after ``fraction`` of its length (never mid-line)."""
    pos = int(len(text) * fraction)
    nl = text.find("\n", pos)
    pos = len(text) if nl < 0 else nl + 1
    return text[:pos], text[pos:]


def split_90_5_5(text: str) -> tuple[str, str, str]:
    train, rest = _cut(text, 0.90)
    valid, test = _cut(rest, 0.5)
    return train, valid, test


def read_text(path: Path) -> str:
    """Read a UTF-8 text file, with clear errors for missing, empty or non-UTF-8 files."""
    if not path.exists():
        raise DataError(f"dataset path does not exist: {path}")
    if not path.is_file():
        raise DataError(f"dataset path is not a file: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (invalid byte at offset {exc.start})") from None
    if not text.strip():
        raise DataError(f"{path} is empty")
    return text


def pydoc_corpus() -> Corpus:
    """Python's bundled documentation topics: ~460 KB of real English prose, always available."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k].strip() + "\n" for k in sorted(topics))
    return Corpus("pydoc", *split_90_5_5(text))


def _directory_corpus(path: Path) -> Corpus:
    found: dict[str, str] = {}
    for split, names in SPLIT_FILES.items():
        for name in names:
            if (path / name).is_file():
                found[split] = read_text(path / name)
                break
    if not found:
        expected = ", ".join(n for names in SPLIT_FILES.values() for n in names[:1])
        raise DataError(f"no split files in {path}: expected some of {expected}")
    notices: list[str] = []
    if "train" not in found:
        if "valid" in found:
            found["train"], found["valid"] = _cut(found["valid"], 0.90)
            notices.append(f"{path}: no train split; training on the first 90% of the validation file, "
                           "validating on its last 10%")
        else:
            found["train"], found["valid"], found["test"] = split_90_5_5(found["test"])
            notices.append(f"{path}: only a test file; split it 90/5/5 into train/valid/test")
    _carve_from_train(found, str(path), notices)
    return Corpus(path.name, found["train"], found["valid"], found["test"], notices)


def _carve_from_train(texts: dict[str, str], name: str, notices: list[str]) -> None:
    """Fill a missing validation or test split with the last 5% of train, saying so."""
    for split, what in (("valid", "validation"), ("test", "test")):
        if split not in texts:
            texts["train"], texts[split] = _cut(texts["train"], 0.95)
            notices.append(f"{name}: no {what} split; using the last 5% of train")


def corpus_from_hf(dataset: Any, name: str, text_column: str = "text") -> Corpus:
    """Turn a Hugging Face ``DatasetDict`` of text rows into a ``Corpus`` (rows concatenated)."""
    aliases = {"train": ("train",), "valid": ("validation", "valid", "val"), "test": ("test",)}
    texts: dict[str, str] = {}
    for split, keys in aliases.items():
        key = next((k for k in keys if k in dataset), None)
        if key is None:
            continue
        rows = dataset[key][text_column]
        texts[split] = "".join(r if r.endswith("\n") else r + "\n" for r in rows)
    if "train" not in texts:
        raise DataError(f"hub dataset {name!r} has no train split (has: {list(dataset)})")
    notices: list[str] = []
    _carve_from_train(texts, name, notices)
    return Corpus(name, texts["train"], texts["valid"], texts["test"], notices)


def env_flag(*names: str) -> bool:
    """True when any of these environment variables is set to 1, true or yes."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in names)


def _hub_corpus(name: str) -> Corpus:
    path, config, column, revision = HUB_DATASETS[name]
    if env_flag("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        raise DataError(f"dataset {name!r} lives on the Hugging Face hub, but HF_HUB_OFFLINE/HF_DATASETS_OFFLINE "
                        f"is set; {OFFLINE_ALTERNATIVES}")
    try:
        import datasets
    except ImportError:
        raise DataError(f"dataset {name!r} needs the 'datasets' package; {OFFLINE_ALTERNATIVES}") from None
    try:
        ds = datasets.load_dataset(path, config, revision=revision)
    except Exception as exc:  # network errors come in many types; all mean the same to the user
        raise DataError(f"could not load {name!r} from the Hugging Face hub ({type(exc).__name__}: "
                        f"{str(exc)[:200]}); {OFFLINE_ALTERNATIVES}") from None
    return corpus_from_hf(ds, name, column)


def load_corpus(spec: str) -> Corpus:
    """Resolve a dataset spec: ``pydoc``, a hub name, or a local file/directory path."""
    if spec == "pydoc":
        return pydoc_corpus()
    if spec in HUB_DATASETS:
        return _hub_corpus(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _directory_corpus(path)
    if path.exists() or spec.endswith(".txt") or os.sep in spec:
        text = read_text(path)
        return Corpus(path.stem, *split_90_5_5(text), notices=[f"{path}: split 90/5/5 into train/valid/test"])
    raise DataError(f"unknown dataset {spec!r}: not 'pydoc', not a hub name ({', '.join(HUB_DATASETS)}), "
                    "and no such file or directory")


# ---- tokenizers ------------------------------------------------------------------------
class Tokenizer(Protocol):
    name: str

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def save(self, path: str | Path) -> None:
        """Write a file ``load_tokenizer`` reads back (a run directory keeps one)."""
        ...

    @property
    def fingerprint(self) -> str:
        """A hash of everything that decides the ids (the token cache is keyed by it)."""
        ...


class CharTokenizer:
    """One token per character; the vocabulary is every character of the corpus (as nanoGPT does)."""

    name = "char"

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_corpus(cls, corpus: Corpus) -> CharTokenizer:
        return cls("".join(sorted(set(corpus.train) | set(corpus.valid) | set(corpus.test))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as exc:
            raise DataError(f"character {exc.args[0]!r} is not in the char vocabulary") from None

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def save(self, path: str | Path) -> None:
        write_json(path, {"dyntie_tokenizer": "char", "chars": self.chars})

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(("char\x00" + self.chars).encode("utf-8")).hexdigest()


class HFTokenizer:
    """A Hugging Face ``tokenizers.Tokenizer`` (trained byte-level BPE, or GPT-2's from a local file)."""

    def __init__(self, tokenizer: Any, name: str) -> None:
        self.tok = tokenizer
        self.name = name

    @property
    def vocab_size(self) -> int:
        return int(self.tok.get_vocab_size())

    def encode(self, text: str) -> list[int]:
        lines = text.splitlines(keepends=True)
        chunks = ["".join(lines[i:i + 256]) for i in range(0, len(lines), 256)]
        return [i for enc in self.tok.encode_batch(chunks) for i in enc.ids]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            self.tok.save(str(tmp))

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.tok.to_str().encode("utf-8")).hexdigest()


def load_tokenizer(path: str | Path, name: str) -> Tokenizer:
    """Read a tokenizer saved by ``Tokenizer.save``: our char format or a Hugging Face ``tokenizer.json``."""
    from tokenizers import Tokenizer as HFTok

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"tokenizer file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"tokenizer file {path} is not valid JSON ({exc})") from None
    if isinstance(data, dict) and data.get("dyntie_tokenizer") == "char":
        return CharTokenizer(data["chars"])
    try:
        return HFTokenizer(HFTok.from_str(json.dumps(data)), name)
    except Exception as exc:
        raise DataError(f"tokenizer file {path} is neither a char vocabulary nor a tokenizers JSON ({exc})") from None


def train_bpe(corpus: Corpus, vocab_size: int, cache_dir: str | Path) -> HFTokenizer:
    """Byte-level BPE trained on the training split, cached by (train text hash, vocab size)."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers import Tokenizer as HFTok

    key = hashlib.sha256(corpus.train.encode("utf-8")).hexdigest()[:16]
    path = Path(cache_dir) / f"bpe-{key}-{vocab_size}.json"
    digest = path.with_suffix(".sha256")
    if path.is_file() and digest.is_file() and digest.read_text().strip() == _file_sha256(path):
        try:
            return HFTokenizer(HFTok.from_file(str(path)), f"bpe{vocab_size}")
        except Exception:
            pass  # a damaged cache entry is rebuilt, never trusted
    bpe = ByteLevelBPETokenizer()
    lines = corpus.train.splitlines(keepends=True)
    bpe.train_from_iterator(lines, vocab_size=vocab_size, min_frequency=2,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    with atomic_path(path) as tmp:
        bpe.save(str(tmp))
    write_text_atomic(digest, _file_sha256(path) + "\n")
    return HFTokenizer(HFTok.from_file(str(path)), f"bpe{vocab_size}")


GPT2_FILE_PAIRS = (("encoder.json", "vocab.bpe"), ("vocab.json", "merges.txt"))  # OpenAI's names, HF's names
GPT2_ENV = "DYNTIE_GPT2_TOKENIZER"


def gpt2_from_files(vocab: Path, merges: Path) -> HFTokenizer:
    """GPT-2's byte-level BPE from its vocabulary and merges files, with HF ``tokenizers``."""
    from tokenizers import Tokenizer as HFTok
    from tokenizers import decoders, models, pre_tokenizers

    try:
        tok = HFTok(models.BPE.from_file(str(vocab), str(merges)))
    except Exception as exc:
        raise DataError(f"cannot read a GPT-2 vocabulary from {vocab} and {merges} ({exc})") from None
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])  # id 50256, as GPT-2 has it
    return HFTokenizer(tok, "gpt2")


def gpt2_tokenizer(path: str | None) -> HFTokenizer:
    """GPT-2's BPE, without downloading unless the hub is reachable and allowed.

    ``path`` (else ``$DYNTIE_GPT2_TOKENIZER``): a ``tokenizer.json``, or a directory holding GPT-2's
    ``encoder.json`` + ``vocab.bpe`` (as released) or ``vocab.json`` + ``merges.txt`` (HF's names).
    Without one: the hub's ``gpt2`` tokenizer (local HF cache first; download only when not offline).
    """
    from tokenizers import Tokenizer as HFTok

    path = path or os.environ.get(GPT2_ENV)
    if path:
        p = Path(path).expanduser()
        if p.is_dir():
            for vocab, merges in GPT2_FILE_PAIRS:
                if (p / vocab).is_file() and (p / merges).is_file():
                    return gpt2_from_files(p / vocab, p / merges)
            if (p / "tokenizer.json").is_file():
                p = p / "tokenizer.json"
            else:
                raise DataError(f"no GPT-2 vocabulary in {p}: expected encoder.json + vocab.bpe, vocab.json + "
                                "merges.txt, or tokenizer.json")
        if not p.is_file():
            raise DataError(f"GPT-2 tokenizer file not found: {p}")
        return HFTokenizer(HFTok.from_file(str(p)), "gpt2")
    offline = env_flag("HF_HUB_OFFLINE")
    try:
        from huggingface_hub import hf_hub_download

        local = hf_hub_download("gpt2", "tokenizer.json", local_files_only=offline)
        return HFTokenizer(HFTok.from_file(local), "gpt2")
    except Exception:
        raise DataError("GPT-2 BPE is not available: pass --tokenizer-path (or set DYNTIE_GPT2_TOKENIZER) to a "
                        "directory with GPT-2's encoder.json + vocab.bpe (e.g. ../shared/data/gpt2) or a "
                        "tokenizer.json, or use --tokenizer bpe (trained here on the corpus)") from None


def build_tokenizer(corpus: Corpus, config: DataConfig) -> Tokenizer:
    if config.tokenizer == "char":
        return CharTokenizer.from_corpus(corpus)
    if config.tokenizer == "bpe":
        return train_bpe(corpus, config.bpe_vocab_size, config.cache_dir)
    return gpt2_tokenizer(config.tokenizer_path)


# ---- token splits and batches ----------------------------------------------------------
@dataclass
class TokenData:
    """The three splits as 1-D token tensors (int64, or memory-mapped uint16/int32 from the token cache),
    plus the tokenizer that made them. Batches are always int64."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    tokenizer: Tokenizer
    corpus_name: str
    notices: list[str]

    def split(self, name: str) -> torch.Tensor:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def token_file(path: Path, encode: Callable[[], list[int]], vocab_size: int) -> torch.Tensor:
    """A split's tokens from a memory-mapped file (uint16 for vocabularies under 65,536, else int32),
    encoding and writing it first when it is missing or fails its SHA-256 (a damaged cache is rebuilt)."""
    dtype = np.uint16 if vocab_size < 65536 else np.int32
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    valid = (path.is_file() and meta.get("dtype") == np.dtype(dtype).name
             and path.stat().st_size == meta.get("count", -1) * np.dtype(dtype).itemsize
             and _file_sha256(path) == meta.get("sha256"))
    if not valid:
        ids = np.asarray(encode(), dtype=dtype)
        with atomic_path(path) as tmp:
            ids.tofile(tmp)
        write_json(meta_path, {"count": int(ids.size), "dtype": np.dtype(dtype).name, "sha256": _file_sha256(path)})
    return torch.from_numpy(np.memmap(path, dtype=dtype, mode="c"))


def tokenize(corpus: Corpus, tokenizer: Tokenizer, block_size: int, cache_dir: str | Path | None = None) -> TokenData:
    """Encode every split; each must hold more than one block of tokens (plus the shifted target).

    With ``cache_dir``, each split is encoded once into a memory-mapped token file keyed by the corpus and
    tokenizer hashes, so large corpora need not fit in memory as ids and later runs skip tokenization."""
    key = hashlib.sha256(f"{corpus.fingerprint}:{tokenizer.fingerprint}".encode()).hexdigest()[:20]
    tensors = {}
    for split in SPLITS:
        text = corpus.split(split)
        if cache_dir is not None:
            ids = token_file(Path(cache_dir) / f"tokens-{key}-{split}.bin", lambda t=text: tokenizer.encode(t),
                             tokenizer.vocab_size)
        else:
            ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
        if len(ids) < block_size + 2:
            raise DataError(f"{corpus.name}: the {split} split has {len(ids)} tokens, fewer than one block "
                            f"({block_size} + 1 target); use a larger corpus or a smaller --block-size")
        tensors[split] = ids
    return TokenData(tensors["train"], tensors["valid"], tensors["test"], tokenizer, corpus.name, list(corpus.notices))


def load_data(config: DataConfig, block_size: int) -> TokenData:
    """The whole pipeline: spec -> corpus -> tokenizer -> token splits (cached as token files)."""
    corpus = load_corpus(config.dataset)
    return tokenize(corpus, build_tokenizer(corpus, config), block_size, cache_dir=config.cache_dir)


def sample_windows(tokens: torch.Tensor, batch_size: int, block_size: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of ``block_size`` tokens and their next-token targets."""
    starts = torch.randint(0, len(tokens) - block_size, (batch_size,), generator=generator)
    idx = starts[:, None] + torch.arange(block_size)
    return tokens[idx].long(), tokens[idx + 1].long()


class BatchSampler:
    """Random training windows from one token split, with a checkpointable generator."""

    def __init__(self, tokens: torch.Tensor, batch_size: int, block_size: int, seed: int) -> None:
        self.tokens = tokens
        self.batch_size = batch_size
        self.block_size = block_size
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        return sample_windows(self.tokens, self.batch_size, self.block_size, self.generator)

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def eval_windows(tokens: torch.Tensor, block_size: int, batch_size: int,
                 max_tokens: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Contiguous non-overlapping windows from the start of a split: deterministic evaluation."""
    n_windows = (len(tokens) - 1) // block_size
    if max_tokens is not None:
        n_windows = max(1, min(n_windows, max_tokens // block_size))
    for start in range(0, n_windows, batch_size):
        idx = torch.arange(start, min(start + batch_size, n_windows))[:, None] * block_size
        offsets = torch.arange(block_size)
        yield tokens[idx + offsets].long(), tokens[idx + offsets + 1].long()
