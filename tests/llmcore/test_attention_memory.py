"""What attention captures really keep, and the cache holding its byte cap and its running bound."""

from __future__ import annotations

import threading

import pytest
import torch

from llmcore.attention import (
    AttentionCapture,
    AttentionInputError,
    CaptureBusy,
    CaptureCache,
    CaptureTooBig,
    capture_attention,
    capture_size,
    prepare_input,
)
from llmcore.loading import LoadedModel, load_model

SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture
def llama(store, tiny_model) -> LoadedModel:
    return load_model(store, "tiny-llama", device="cpu")


def capture(loaded: LoadedModel, text: str = SENTENCE) -> AttentionCapture:
    inp = prepare_input(loaded.tokenizer, text, as_chat=False, max_tokens=1024, model_name=loaded.name)
    return capture_attention(loaded.model, inp, model_name=loaded.name, is_causal=True)


def storages(cap: AttentionCapture) -> dict[int, int]:
    found = {}
    for tensor in [*cap.layers, cap.overview]:
        found[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
    return found


def test_a_capture_counts_every_byte_its_tensors_keep(llama: LoadedModel) -> None:
    cap = capture(llama, SENTENCE * 8)  # over 64 tokens: the overview is pooled
    layers, heads, t = cap.num_layers, cap.num_heads, cap.num_tokens
    assert cap.nbytes == sum(storages(cap).values())
    assert cap.nbytes == layers * heads * t * t * 2 + cap.overview.numel()
    # Every layer lives in one block, so dropping the capture frees one allocation.
    assert len({layer.untyped_storage().data_ptr() for layer in cap.layers}) == 1
    assert capture_size(llama.model, t).kept == cap.nbytes
    assert capture_size(llama.model, t).scratch == 3 * heads * t * t * 4


def test_the_cache_counts_what_its_captures_keep_and_holds_its_cap(llama: LoadedModel) -> None:
    texts = [SENTENCE * n for n in (1, 3, 5, 2, 6, 4, 1, 5, 3, 6, 2, 4)]
    sizes = [capture_size(llama.model, len(llama.tokenizer(t)["input_ids"])) for t in texts]
    peaks = [size.peak for size in sizes]
    # Room for the biggest running capture beside two of the biggest kept ones.
    cache = CaptureCache(max_captures=100, max_bytes=max(peaks) + 2 * max(size.kept for size in sizes))
    kept: dict[str, AttentionCapture] = {}
    for text, peak in zip(texts, peaks, strict=True):
        with cache.reserve(peak) as room:
            assert cache.total_bytes() + cache.reserved_bytes() <= cache.max_bytes
            cap = capture(llama, text)
            room.keep(cap, owner=1)
        kept[cap.capture_id] = cap
        alive = [c for cid, c in kept.items() if cache.get(cid, owner=1) is not None]
        assert cache.total_bytes() == sum(sum(storages(c).values()) for c in alive)
        assert cache.total_bytes() <= cache.max_bytes
        assert cache.reserved_bytes() == 0
    assert 1 < len(cache) < len(texts)  # it evicted, and kept more than the newest


def test_a_capture_bigger_than_the_whole_cache_is_refused_before_it_runs(llama: LoadedModel) -> None:
    size = capture_size(llama.model, 40)
    cache = CaptureCache(max_bytes=size.peak - 1)
    with pytest.raises(CaptureTooBig, match="this server keeps at most") as refused, cache.reserve(size.peak):
        pytest.fail("it ran")
    assert isinstance(refused.value, AttentionInputError)  # a 4xx for the user: shorten the text
    assert cache.reserved_bytes() == 0


def hold(cache: CaptureCache, nbytes: int, started: threading.Event, done: threading.Event) -> None:
    with cache.reserve(nbytes, timeout=5):
        started.set()
        done.wait(10)


def test_captures_beyond_the_running_bound_are_refused_after_their_wait() -> None:
    cache = CaptureCache(max_bytes=10**6, max_running=2)
    done = threading.Event()
    holders = []
    for _ in range(2):
        started = threading.Event()
        holders.append(threading.Thread(target=hold, args=(cache, 10, started, done)))
        holders[-1].start()
        assert started.wait(5)
    with pytest.raises(CaptureBusy, match="busy"), cache.reserve(10, timeout=0.2):
        pytest.fail("a third capture ran")
    done.set()
    for t in holders:
        t.join(5)
    with cache.reserve(10, timeout=0.2):
        assert cache.reserved_bytes() == 10


def test_a_capture_waits_for_room_that_a_running_one_frees() -> None:
    cache = CaptureCache(max_bytes=100, max_running=2)
    started, done = threading.Event(), threading.Event()
    first = threading.Thread(target=hold, args=(cache, 80, started, done))
    first.start()
    assert started.wait(5)
    with pytest.raises(CaptureBusy), cache.reserve(50, timeout=0.1):
        pytest.fail("two captures over the cap ran together")
    threading.Timer(0.2, done.set).start()
    with cache.reserve(50, timeout=5):  # waits for the first to finish
        assert cache.reserved_bytes() == 50
    first.join(5)


def test_keeping_a_capture_evicts_older_ones_to_stay_under_the_cap(llama: LoadedModel) -> None:
    caps = [capture(llama) for _ in range(3)]
    cache = CaptureCache(max_bytes=caps[0].nbytes * 2)
    for cap in caps:
        cache.put(cap, owner=1)
    assert len(cache) == 2
    assert cache.get(caps[0].capture_id, owner=1) is None
    assert cache.total_bytes() == caps[1].nbytes + caps[2].nbytes
    torch.testing.assert_close(cache.get(caps[2].capture_id, owner=1).layers[0], caps[2].layers[0])
