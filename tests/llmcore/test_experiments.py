"""Engine experiments (llmcore.experiments) on the tiny model: every series comes from real engine runs,
the bounds refuse what they should, and a cancelled experiment stops."""

from __future__ import annotations

import pytest

from llmcore import experiments
from llmcore.experiments import ExperimentError, config_for, overlay, run_experiment
from llmcore.jobs import JobCancelled, JobContext, JobFailed, Update
from llmcore.kernels import model_attention
from llmcore.loading import LoadedModel, load_model


@pytest.fixture
def loaded(store, tiny_model) -> LoadedModel:
    return load_model(store, "tiny-llama", device="cpu")


def recording() -> tuple[JobContext, list[Update]]:
    updates: list[Update] = []
    return JobContext(on_update=updates.append), updates


def chart(result: dict, chart_id: str) -> dict:
    return next(c for c in result["charts"] if c["id"] == chart_id)


def points(result: dict, chart_id: str, name: str) -> list[list[float]]:
    return next(s["points"] for s in chart(result, chart_id)["series"] if s["name"] == name)


def test_batching_runs_each_batch_size_with_that_many_streams_in_one_pass(loaded: LoadedModel) -> None:
    ctx, updates = recording()
    result = run_experiment(loaded, config_for("batching", {"batch_sizes": [1, 2, 4], "new_tokens": 32}), ctx)
    assert result["kind"] == "batching"
    assert [r["batch_size"] for r in result["table"]] == [1, 2, 4]
    assert [r["batch_size_max"] for r in result["table"]] == [1, 2, 4]
    assert all(r["aggregate_tokens_per_s"] > 0 and r["inter_token_ms"] > 0 for r in result["table"])
    assert [p[0] for p in points(result, "throughput", "aggregate")] == [1, 2, 4]
    assert chart(result, "throughput")["x"]["scale"] == "log2"
    assert result["summary"].startswith("4 streams at once")
    steps = [(u.step, u.total) for u in updates if u.total]
    assert steps == [(1, 3), (2, 3), (3, 3)], "one progress report per batch size"


def test_prefix_cache_serves_earlier_turns_from_the_cache_only_when_it_is_on(loaded: LoadedModel) -> None:
    config = config_for("prefix_cache", {"turns": 3, "turn_tokens": 30, "new_tokens": 8})
    result = run_experiment(loaded, config)
    rows = result["table"]
    assert [r["turn"] for r in rows] == [1, 2, 3]
    assert rows[0]["prompt_tokens"] < rows[1]["prompt_tokens"] < rows[2]["prompt_tokens"]
    assert all(r["cached_tokens_cache_on"] > 0 for r in rows[1:]), "later turns reuse the earlier ones"
    assert rows[2]["cached_tokens_cache_on"] > rows[1]["cached_tokens_cache_on"]
    assert all(r["cached_tokens_cache_off"] == 0 for r in rows), "with the cache off nothing is reused"
    assert all(r["ttft_ms_cache_on"] > 0 and r["ttft_ms_cache_off"] > 0 for r in rows)
    assert {s["name"] for s in chart(result, "ttft")["series"]} == {"cache on", "cache off"}


def test_a_conversation_is_cut_to_fit_the_models_context(loaded: LoadedModel) -> None:
    result = run_experiment(
        loaded, config_for("prefix_cache", {"turns": 4, "turn_tokens": 512, "new_tokens": 4})
    )
    rows = result["table"]
    assert rows, "at least the first turn fits"
    assert max(r["prompt_tokens"] for r in rows) + 4 <= 256  # the tiny model's context
    if len(rows) < 4:  # the answers' text took more tokens than planned: the turn that overflows is named
        assert f"turn {len(rows) + 1} does not fit" in " ".join(result["notes"])
    with pytest.raises(JobFailed, match="too short"):
        run_experiment(loaded, config_for("prefix_cache", {"turns": 8, "new_tokens": 64}))


def test_speculative_reports_acceptance_and_speedup_per_proposer_and_keeps_greedy_output(
    loaded: LoadedModel, store
) -> None:
    config = config_for(
        "speculative", {"draft_lengths": [1, 4], "new_tokens": 32, "draft_model": "tiny-llama"}
    )
    result = run_experiment(loaded, config, drafts=lambda name: load_model(store, name, device="cpu"))
    rows = result["table"]
    assert [(r["proposer"], r["k"]) for r in rows] == [
        ("prompt_lookup", 1),
        ("prompt_lookup", 4),
        ("draft", 1),
        ("draft", 4),
    ]
    for row in rows:
        assert min(row["proposed"], row["verify_passes"]) > 0
        assert 0 <= row["acceptance_rate"] <= 1
        assert row["accepted"] == round(row["acceptance_rate"] * row["proposed"])
        assert row["speedup"] > 0
        assert row["same_as_plain"], "greedy speculative decoding gives the plain answer"
    drafted = [r for r in rows if r["proposer"] == "draft"]
    assert all(r["acceptance_rate"] > 0.5 for r in drafted), "a model drafting for itself is mostly right"
    names = [s["name"] for s in chart(result, "speedup")["series"]]
    assert names == ["prompt lookup", "draft tiny-llama", "plain decoding"]
    assert points(result, "acceptance", "prompt lookup")[1][0] == 4


def test_attention_times_each_available_backend_and_skips_the_others(loaded: LoadedModel) -> None:
    before = model_attention(loaded.model)
    config = config_for(
        "attention", {"lengths": [32, 64], "backends": ["math", "eager", "efficient"], "repeats": 1}
    )
    result = run_experiment(loaded, config)
    assert [(r["backend"], r["tokens"]) for r in result["table"]] == [
        ("math", 32), ("math", 64), ("eager", 32), ("eager", 64)
    ]  # fmt: skip
    assert all(r["prefill_ms"] > 0 for r in result["table"])
    assert any("efficient" in n and "not available" in n for n in result["notes"])
    assert [s["name"] for s in chart(result, "prefill")["series"]] == ["math", "eager"]
    assert model_attention(loaded.model) == before, "the loaded model's attention is put back"
    with pytest.raises(JobFailed, match="context"):
        run_experiment(loaded, config_for("attention", {"lengths": [256]}))


def test_quality_reads_the_verify_reports_of_quantized_children(store, tiny_model, tmp_path) -> None:
    from llmcore import quantize

    out = tmp_path / "bf16"
    quantize.run_quantize(store.path("tiny-llama"), out, quantize.QuantizeConfig(method="bf16"), JobContext())
    report = quantize.verify(
        store.path("tiny-llama"), out, JobContext(), prompts=["Hello world"], new_tokens=4
    )
    broken = {"name": "tiny-broken", "method": "int8", "report": {"summary": "measuring it failed"}}
    result = experiments.quality_tradeoff(
        "tiny-llama", [{"name": "tiny-bf16", "method": "bf16", "report": report}, broken]
    )
    (row,) = result["table"]
    assert row["model"] == "tiny-bf16"
    assert row["size_mb"] < row["parent_size_mb"], "bf16 halves the float32 weights on disk"
    assert row["perplexity"] == round(report["quantized"]["perplexity"], 3)
    assert points(result, "perplexity", "tiny-bf16") == [[row["size_mb"], row["perplexity"]]]
    assert chart(result, "speed")["mode"] == "points"
    with pytest.raises(JobFailed, match="quantize job"):
        experiments.quality_tradeoff("tiny-llama", [broken])


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("batching", {"new_tokens": 257}, "new_tokens"),
        ("batching", {"new_tokens": True}, "new_tokens"),
        ("batching", {"batch_sizes": [3]}, "batch_sizes"),
        ("batching", {"batch_sizes": []}, "batch_sizes"),
        ("prefix_cache", {"turns": 9}, "turns"),
        ("speculative", {"draft_lengths": [9]}, "draft_lengths"),
        ("speculative", {"draft_lengths": [2, 2]}, "draft_lengths"),
        ("attention", {"lengths": [8192]}, "lengths"),
        ("attention", {"backends": ["fast"]}, "backends"),
        ("nonsense", {}, "kind"),
    ],
)
def test_parameters_out_of_bounds_are_refused_naming_the_field(kind: str, params: dict, field: str) -> None:
    with pytest.raises(ExperimentError) as caught:
        config_for(kind, params)
    assert caught.value.field == field


def test_a_cancelled_experiment_stops_and_ends_its_streams(loaded: LoadedModel) -> None:
    ctx = JobContext(is_cancelled=lambda: True)
    with pytest.raises(JobCancelled):
        run_experiment(loaded, config_for("batching", {"batch_sizes": [4], "new_tokens": 256}), ctx)


def test_two_results_of_one_kind_overlay_chart_by_chart(loaded: LoadedModel) -> None:
    config = config_for("batching", {"batch_sizes": [1, 2], "new_tokens": 32})
    a, b = run_experiment(loaded, config), run_experiment(loaded, config)
    charts = overlay([("#1", a), ("#2", b)])
    throughput = next(c for c in charts if c["id"] == "throughput")
    assert [(s["name"], s["group"]) for s in throughput["series"]] == [
        ("#1 aggregate", 0), ("#1 per stream (decode)", 0), ("#2 aggregate", 1), ("#2 per stream (decode)", 1)
    ]  # fmt: skip
    other = run_experiment(loaded, config_for("attention", {"lengths": [32], "repeats": 1}))
    with pytest.raises(ExperimentError):
        overlay([("#1", a), ("#3", other)])
