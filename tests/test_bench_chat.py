"""The chat benchmark runs and reports its parts (`python -m bench chat`), checked on the tiny model.
No timing is asserted here: speed targets are the benchmark's business."""

from __future__ import annotations

from typing import Any

import pytest

from bench import chat
from tests.conftest import TINY_NAME


def run_parts(store, parts: tuple[str, ...], **kwargs: Any) -> dict[str, Any]:
    return chat.measure(store.root, TINY_NAME, new_tokens=6, runs=2, parts=parts, **kwargs)


def test_engine_parts_report_exact_lengths_and_speeds(store, tiny_model) -> None:
    result = run_parts(store, ("engine", "two_streams", "llama_cpp"))

    engine = result["engine"]
    assert engine["generated_tokens"] == [6, 6]  # end-of-turn ignored: every run is the full length
    assert len(engine["each_run"]) == 2
    assert engine["decode_tokens_per_second"] > 0
    assert engine["time_to_first_token_ms"] > 0
    assert result["prompt_tokens"] > 0
    two = result["two_streams"]
    assert two["generated_tokens"] == [6, 6]
    assert all(t > 0 for t in two["decode_tokens_per_second"])
    assert two["aggregate_tokens_per_second"] > 0


def test_packed_and_float32_engines_are_measured_side_by_side(store, tiny_model, tmp_path) -> None:
    from llmcore.loading import load_model
    from tests.llmcore.test_packed import snap_layers

    result = run_parts(store, ("engine", "engine_float32", "packed_accuracy"))
    assert result["engine"]["decode"]["kind"] == "float"  # random weights: nothing to pack
    assert result["engine_float32"]["generated_tokens"] == [6, 6]
    assert "nothing is packed" in result["packed_accuracy"]["skipped"]

    loaded = load_model(store, TINY_NAME, device="cpu")
    snap_layers(loaded.model)  # as if imported from a Q4_1 GGUF
    loaded.model.save_pretrained(tmp_path / "q4", safe_serialization=True)
    loaded.tokenizer.save_pretrained(tmp_path / "q4")
    store.import_folder(tmp_path / "q4", "tiny-q4", license="MIT")
    result = chat.measure(
        store.root, "tiny-q4", new_tokens=6, runs=2, parts=("engine", "engine_float32", "packed_accuracy")
    )
    assert result["engine"]["decode"]["kind"] == "int4-packed"
    assert result["engine"]["decode"]["packed_layers"] == 14
    assert result["engine_float32"]["decode_tokens_per_second"] > 0
    accuracy = result["packed_accuracy"]
    assert 0.0 <= accuracy["top1_agreement"] <= 1.0
    assert 0.0 <= accuracy["mean_kl"] < 0.01
    assert accuracy["perplexity_packed"] > 1.0
    assert abs(accuracy["perplexity_change_percent"]) < 5


def test_missing_parts_are_skipped_with_a_reason_not_failed(store, tiny_model) -> None:
    result = run_parts(store, ("engine", "llama_cpp"), gguf=None)

    assert result["websocket"] == {"skipped": "not selected"}
    assert result["two_streams"] == {"skipped": "not selected"}
    # no GGUF behind the tiny model (or no llama-cpp-python here): a reason, not an error
    assert result["llama_cpp"]["skipped"]
    targets = result["targets"]
    assert targets["websocket_tokens_per_second_met"] is None
    assert targets["websocket_time_to_first_token_met"] is None
    assert targets["engine_over_llama_cpp_met"] is None
    assert targets["site_added_time_to_first_token_met"] is None
    assert targets["websocket_min_tokens_per_second_ratio"] == chat.WS_MIN_TOKENS_PER_SECOND_RATIO


def test_the_comparison_checks_each_target() -> None:
    engine = {"decode_tokens_per_second": 100.0, "time_to_first_token_ms": 50.0}
    fast_socket = {
        "decode_tokens_per_second": 97.0,
        "time_to_first_token_ms": 70.0,
        "server_engine_decode_tokens_per_second": 98.0,
        "site_added_time_to_first_token_ms": 12.0,
    }
    slow_socket = {
        "decode_tokens_per_second": 90.0,
        "time_to_first_token_ms": 120.0,
        "server_engine_decode_tokens_per_second": 100.0,
        "site_added_time_to_first_token_ms": 45.0,
    }
    llama = {"decode_tokens_per_second": 400.0}

    good = chat.compare(engine, fast_socket, llama)
    bad = chat.compare(engine, slow_socket, llama)

    assert good["websocket_over_engine_tokens_per_second"] == 0.97
    assert good["websocket_added_time_to_first_token_ms"] == 20.0
    assert good["engine_over_llama_cpp_tokens_per_second"] == 0.25
    assert good["targets"]["websocket_tokens_per_second_met"] is True
    assert good["targets"]["websocket_time_to_first_token_met"] is True
    assert good["targets"]["engine_over_llama_cpp_met"] is False
    assert bad["targets"]["websocket_tokens_per_second_met"] is False
    assert bad["targets"]["websocket_time_to_first_token_met"] is False
    assert good["websocket_over_server_engine_tokens_per_second"] == 0.99
    assert good["targets"]["websocket_over_server_engine_met"] is True
    assert good["targets"]["site_added_time_to_first_token_met"] is True
    assert bad["targets"]["websocket_over_server_engine_met"] is False
    assert bad["targets"]["site_added_time_to_first_token_met"] is False


@pytest.mark.integration
def test_the_socket_part_streams_through_a_real_site(store, tiny_model) -> None:
    result = run_parts(store, ("engine", "websocket"))

    socket_part = result["websocket"]
    assert len(socket_part["generated_tokens"]) == 2
    assert all(0 < n <= 6 for n in socket_part["generated_tokens"])
    assert socket_part["time_to_first_token_ms"] > 0
    assert socket_part["server_engine_time_to_first_token_ms"] > 0
    assert set(socket_part["stop_reasons"]) <= {"length", "stop"}
    assert socket_part["site_added_time_to_first_token_ms"] is not None
    assert result["websocket_added_time_to_first_token_ms"] is not None
