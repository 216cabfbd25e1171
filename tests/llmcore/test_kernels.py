"""Attention kernels as a setting (llmcore.kernels): every backend this machine runs computes what eager
attention does, an unknown or unavailable one is refused with the reason, and restrictions never mix."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from llmcore.kernels import (
    ATTENTION_BACKENDS,
    AttentionBackendError,
    attention_context,
    available_backends,
    describe_attention,
    model_attention,
    prepare_model_attention,
)
from llmcore.loading import LoadedModel, load_model

TEXT = "Attention lets every token look at the tokens that came before. Hello world!"


@pytest.fixture
def loaded(store, tiny_model) -> LoadedModel:
    return load_model(store, "tiny-llama", device="cpu")


def prefill_and_step(loaded: LoadedModel, backend: str) -> tuple[torch.Tensor, torch.Tensor, set[str]]:
    """Logits of a whole prompt (causal prefill) and of one more token read against its KV cache, and
    the attention ops PyTorch ran for them."""
    ids = torch.tensor([loaded.tokenizer.encode(TEXT)])
    with torch.profiler.profile() as profiler, torch.inference_mode(), attention_context(backend):
        out = loaded.model(ids, use_cache=True)
        step = loaded.model(ids[:, -1:], cache=out.past_key_values, use_cache=True)
    ops = {e.name for e in profiler.events() if "_scaled_dot_product" in e.name}
    return out.logits[0].float(), step.logits[0, -1].float(), ops


# The op each SDPA backend runs on a CPU (eager attention runs none of them).
CPU_OPS = {
    "math": {"aten::_scaled_dot_product_attention_math"},
    "flash": {"aten::_scaled_dot_product_flash_attention_for_cpu"},
    "eager": set(),
}


def test_cpu_offers_math_flash_and_eager_but_not_memory_efficient_attention() -> None:
    cpu = available_backends("cpu")
    assert set(cpu) <= set(ATTENTION_BACKENDS)
    assert {"sdpa-auto", "math", "eager"} <= set(cpu)
    assert "efficient" not in cpu  # a CUDA kernel
    assert cpu == [b for b in ATTENTION_BACKENDS if b in cpu]  # in the order of the setting's choices


def test_every_available_backend_computes_what_eager_attention_does(loaded: LoadedModel) -> None:
    prepare_model_attention(loaded.model, "eager")
    assert model_attention(loaded.model) == "eager"
    want_prompt, want_step, ops = prefill_and_step(loaded, "eager")
    assert ops == set()
    assert len(want_prompt) > 10
    for backend in available_backends("cpu"):
        prepare_model_attention(loaded.model, backend)
        assert model_attention(loaded.model) == ("eager" if backend == "eager" else "sdpa")
        got_prompt, got_step, ops = prefill_and_step(loaded, backend)
        if backend in CPU_OPS:
            assert ops == CPU_OPS[backend], backend  # the backend asked for, and only it, ran
        torch.testing.assert_close(got_prompt, want_prompt, rtol=1e-4, atol=1e-5, msg=backend)
        torch.testing.assert_close(got_step, want_step, rtol=1e-4, atol=1e-5, msg=backend)


def all_on() -> bool:
    """Every SDPA backend allowed (PyTorch's process-wide switches, named cuda, read on every device)."""
    flags = torch.backends.cuda
    return flags.flash_sdp_enabled() and flags.math_sdp_enabled() and flags.mem_efficient_sdp_enabled()


def test_a_backend_restricts_sdpa_inside_the_context_only() -> None:
    flags = torch.backends.cuda
    assert all_on()
    with attention_context("math"):
        assert flags.math_sdp_enabled()
        assert not flags.flash_sdp_enabled()
        assert not flags.mem_efficient_sdp_enabled()
        with attention_context("math"):  # the same backend nests
            assert not flags.flash_sdp_enabled()
        assert not flags.flash_sdp_enabled()
    assert all_on()
    with attention_context("sdpa-auto"), attention_context("eager"):  # these restrict nothing
        assert all_on()
    # a restriction really binds: a backend CPUs do not have leaves SDPA nothing to run
    q = torch.randn(1, 2, 4, 8)
    with attention_context("efficient"), pytest.raises(RuntimeError):
        torch.nn.functional.scaled_dot_product_attention(q, q, q)


def test_unknown_and_unavailable_backends_are_refused_with_the_reason(loaded: LoadedModel) -> None:
    with pytest.raises(ValueError, match="Unknown attention backend 'fast'.*sdpa-auto, math, flash"):
        prepare_model_attention(loaded.model, "fast")
    with pytest.raises(ValueError, match="Unknown attention backend"), attention_context("fast"):
        pass
    with pytest.raises(AttentionBackendError) as refused:
        prepare_model_attention(loaded.model, "efficient")
    message = str(refused.value)
    assert "'efficient' attention backend is not available" in message
    assert "CUDA" in message
    assert "available: sdpa-auto, math" in message
    assert model_attention(loaded.model) == "sdpa"  # a refused setting changes nothing


def test_describe_attention_says_what_the_model_runs(loaded: LoadedModel) -> None:
    auto = describe_attention(loaded.model, "sdpa-auto")
    assert auto["implementation"] == "sdpa"
    assert auto["ready"] is True
    assert auto["device"] == "cpu"
    assert auto["dtype"] == "float32"
    assert auto["available"] == available_backends("cpu")
    assert auto["label"].startswith("SDPA, PyTorch's choice")
    assert describe_attention(loaded.model, "eager")["ready"] is False  # not switched yet
    prepare_model_attention(loaded.model, "eager")
    eager = describe_attention(loaded.model, "eager")
    assert (eager["implementation"], eager["ready"]) == ("eager", True)
    assert describe_attention(loaded.model, "math")["label"] == "SDPA, math backend only"
    with pytest.raises(ValueError, match="Unknown attention backend"):
        describe_attention(loaded.model, "fast")


def test_a_thread_asking_for_another_backend_waits_for_the_first_to_finish() -> None:
    seen: list[str] = []
    math_open, flash_may_try = threading.Event(), threading.Event()

    def hold_math() -> None:
        with attention_context("math"):
            seen.append("math in")
            math_open.set()
            flash_may_try.wait(5)
            time.sleep(0.2)  # flash is waiting now, if it waits at all
            seen.append("math out")

    def want_flash() -> None:
        math_open.wait(5)
        flash_may_try.set()
        with attention_context("flash"):
            seen.append("flash in" + (", math on too" if torch.backends.cuda.math_sdp_enabled() else ""))

    threads = [threading.Thread(target=hold_math), threading.Thread(target=want_flash)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == ["math in", "math out", "flash in"]
    assert all_on()


def test_another_backend_inside_a_context_is_refused() -> None:
    with attention_context("math"), pytest.raises(AttentionBackendError, match="inside"):  # noqa: SIM117
        with attention_context("flash"):
            pass
    assert all_on()
