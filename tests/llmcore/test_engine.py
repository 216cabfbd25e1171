"""The generation engine on the tiny random-weight model (and one chat answer from the real one)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
import torch

from llmcore.engine import DoneEvent, Engine, GenerationRequest, StatsEvent, TokenEvent, own_threads
from llmcore.engine.detokenizer import Detokenizer
from llmcore.loading import load_model
from llmcore.sampling import SamplingConfig

GREEDY = SamplingConfig(temperature=0)
RANDOM = SamplingConfig(temperature=1.0)


def prompt(loaded, text: str = "Hello world") -> list[int]:
    return list(loaded.tokenizer.encode(text))


def request(loaded, **kw) -> GenerationRequest:
    kw.setdefault("prompt_ids", prompt(loaded))
    kw.setdefault("sampling", GREEDY)
    kw.setdefault("max_new_tokens", 12)
    kw.setdefault("ignore_stop_tokens", True)
    return GenerationRequest(**kw)


def split(events):
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    stats = [e for e in events if isinstance(e, StatsEvent)]
    done = [e for e in events if isinstance(e, DoneEvent)]
    return tokens, stats, done


def test_stream_is_tokens_then_stats_then_one_done(engine, loaded) -> None:
    events = engine.generate(request(loaded, top_alternatives=3))
    tokens, stats, done = split(events)
    assert len(tokens) == 12
    assert len(stats) == 1
    assert len(done) == 1
    assert events[-2] is stats[0]
    assert events[-1] is done[0]
    assert [t.index for t in tokens] == list(range(12))
    assert done[0].reason == "length"
    assert "".join(t.text for t in tokens) + done[0].tail == done[0].text
    assert all(len(t.alternatives) == 3 and t.alternatives[0][0] == t.id for t in tokens)  # greedy: top
    assert stats[0].generated_tokens == 12
    assert stats[0].prompt_tokens == len(prompt(loaded))
    assert stats[0].provenance["model"] == "tiny-llama"
    assert stats[0].provenance["sampling"]["temperature"] == 0


def test_greedy_equals_transformers_generate(engine, loaded) -> None:
    ids = prompt(loaded, "The quick brown fox")
    tokens, _, done = split(engine.generate(request(loaded, prompt_ids=ids, max_new_tokens=20)))
    x = torch.tensor([ids])
    out = loaded.model.generate(
        x, attention_mask=torch.ones_like(x), max_new_tokens=20, do_sample=False, eos_token_id=None
    )
    assert [t.id for t in tokens] == out[0, len(ids) :].tolist()


def test_seeded_sampling_reproduces_and_a_missing_seed_is_reported(engine, loaded) -> None:
    a = split(engine.generate(request(loaded, sampling=RANDOM, seed=7, max_new_tokens=15)))
    b = split(engine.generate(request(loaded, sampling=RANDOM, seed=7, max_new_tokens=15)))
    c = split(engine.generate(request(loaded, sampling=RANDOM, seed=8, max_new_tokens=15)))
    assert [t.id for t in a[0]] == [t.id for t in b[0]] != [t.id for t in c[0]]
    # No seed: the engine draws one and reports it; replaying with it gives the same text.
    first = split(engine.generate(request(loaded, sampling=RANDOM, max_new_tokens=15)))
    seed = first[1][0].seed
    replay = split(engine.generate(request(loaded, sampling=RANDOM, seed=seed, max_new_tokens=15)))
    assert replay[2][0].text == first[2][0].text
    assert [t.id for t in replay[0]] == [t.id for t in first[0]]


def test_two_concurrent_streams_interleave_and_match_their_solo_results(engine, loaded) -> None:
    ra = request(loaded, sampling=RANDOM, seed=1, max_new_tokens=60)
    rb = request(
        loaded, prompt_ids=prompt(loaded, "Attention lets"), sampling=RANDOM, seed=2, max_new_tokens=60
    )
    solo_a = [t.id for t in split(engine.generate(ra))[0]]
    solo_b = [t.id for t in split(engine.generate(rb))[0]]
    engine.schedule.clear()
    sa, sb = engine.submit(ra), engine.submit(rb)
    ea, eb = sa.events(), sb.events()
    assert [t.id for t in split(ea)[0]] == solo_a
    assert [t.id for t in split(eb)[0]] == solo_b
    order = [sid for sid, _ in engine.schedule]
    a_steps = [k for k, sid in enumerate(order) if sid == sa.id]
    b_steps = [k for k, sid in enumerate(order) if sid == sb.id]
    # Round-robin: while both run, their steps alternate; B's tokens come between A's first and last.
    inside = [k for k in b_steps if a_steps[0] < k < a_steps[-1]]
    assert len(inside) >= 50
    assert all(order[k] != order[k + 1] for k in range(b_steps[0], min(a_steps[-1], b_steps[-1])))


def test_cancel_stops_before_the_next_token(engine, loaded) -> None:
    stream = engine.submit(request(loaded, max_new_tokens=250))
    seen: list[object] = []
    for event in stream:
        seen.append(event)
        if isinstance(event, TokenEvent) and event.index == 2:
            stream.cancel()
    tokens, stats, done = split(seen)
    assert [t.index for t in tokens] == [0, 1, 2]
    assert done[0].reason == "cancelled"
    assert len(done) == 1
    assert isinstance(seen[-1], DoneEvent)
    assert stats[0].generated_tokens < 250


def test_stop_sequence_ends_the_stream_without_its_text(engine, loaded) -> None:
    full = split(engine.generate(request(loaded, max_new_tokens=20)))[2][0].text
    printable = [
        k for k in range(2, len(full) - 2) if full[k : k + 2].isprintable() and full[k : k + 2].strip()
    ]
    assert printable, full
    stop = full[printable[0] : printable[0] + 2]
    tokens, _, done = split(engine.generate(request(loaded, max_new_tokens=20, stop_sequences=[stop])))
    assert done[0].reason == "stop_sequence"
    assert done[0].text == full[: full.find(stop)]
    assert "".join(t.text for t in tokens) == done[0].text
    assert stop not in done[0].text


def test_end_of_turn_token_stops(loaded) -> None:
    im_end = loaded.tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():  # as in test_loading: make the end-of-turn token the most likely one
        loaded.model.lm_head.weight.zero_()
        loaded.model.lm_head.weight[im_end] = 1.0
        loaded.model.model.norm.weight.fill_(1.0)
    with Engine(loaded) as engine:
        events = engine.generate(
            GenerationRequest(
                messages=[{"role": "user", "content": "hi"}], sampling=GREEDY, max_new_tokens=20
            )
        )
    tokens, stats, done = split(events)
    assert tokens == []
    assert done[0].reason == "stop"
    assert done[0].text == ""
    assert stats[0].prompt_tokens > 3  # the chat template was rendered


def test_max_new_tokens_is_clamped_to_the_context(engine, loaded) -> None:
    ids = prompt(loaded)
    context = loaded.model.config.max_position_embeddings
    tokens, stats, done = split(engine.generate(request(loaded, max_new_tokens=10_000)))
    assert stats[0].clamped
    assert stats[0].max_new_tokens == context - len(ids)
    assert stats[0].max_new_tokens_requested == 10_000
    assert len(tokens) == context - len(ids)
    assert done[0].reason == "length"
    too_long = split(engine.generate(request(loaded, prompt_ids=[5] * context)))
    assert too_long[2][0].reason == "error"
    assert "context" in (too_long[2][0].error or "")


def test_best_of_keeps_the_best_mean_logprob_and_reports_the_others(engine, loaded) -> None:
    tokens, _, done = split(engine.generate(request(loaded, sampling=RANDOM, seed=5, best_of=3)))
    cands = done[0].candidates
    assert len(cands) == 3
    assert sorted(c.seed for c in cands) == [5, 6, 7]
    assert cands[0].mean_logprob == max(c.mean_logprob for c in cands)
    assert done[0].text == cands[0].text
    assert [t.id for t in tokens] == cands[0].token_ids
    mean = sum(t.model_logprob for t in tokens) / len(tokens)
    assert mean == pytest.approx(cands[0].mean_logprob)
    # Each candidate is the plain seeded run with its own seed.
    for c in cands:
        solo = split(engine.generate(request(loaded, sampling=RANDOM, seed=c.seed)))[0]
        assert [t.id for t in solo] == c.token_ids


def test_beam_search_is_deterministic(engine, loaded) -> None:
    r = request(loaded, num_beams=3, max_new_tokens=10)
    a, b = split(engine.generate(r)), split(engine.generate(r))
    assert [t.id for t in a[0]] == [t.id for t in b[0]]
    assert len(a[0]) == 10
    assert a[2][0].reason == "length"
    assert "".join(t.text for t in a[0]) + a[2][0].tail == a[2][0].text
    x = torch.tensor([r.prompt_ids])
    out = loaded.model.generate(
        x,
        attention_mask=torch.ones_like(x),
        num_beams=3,
        do_sample=False,
        max_new_tokens=10,
        eos_token_id=None,
    )
    assert [t.id for t in a[0]] == out[0, x.shape[1] :].tolist()


def test_async_iteration(engine, loaded) -> None:
    async def collect() -> list[object]:
        return [event async for event in engine.submit(request(loaded))]

    events = asyncio.run(collect())
    tokens, _, done = split(events)
    sync_tokens = split(engine.generate(request(loaded)))[0]
    assert [t.id for t in tokens] == [t.id for t in sync_tokens]
    assert done[0].reason == "length"


def test_an_error_ends_only_its_stream(engine, loaded) -> None:
    good = engine.submit(request(loaded, max_new_tokens=30))
    bad = engine.submit(request(loaded, prompt_ids=[loaded.model.config.vocab_size + 5]))
    bad_tokens, _, bad_done = split(bad.events())
    assert bad_tokens == []
    assert bad_done[0].reason == "error"
    assert "vocabulary" in (bad_done[0].error or "")
    assert split(good.events())[2][0].reason == "length"
    assert split(engine.generate(request(loaded)))[2][0].reason == "length"  # still serving


def test_a_model_failure_mid_stream_is_reported(engine, loaded) -> None:
    calls = {"n": 0}

    def flaky(module, args):
        calls["n"] += 1  # every forward pass embeds its tokens first: the third one fails
        if calls["n"] == 3:
            raise RuntimeError("boom")

    hook = engine.model.get_input_embeddings().register_forward_pre_hook(flaky)
    try:
        tokens, _, done = split(engine.generate(request(loaded)))
    finally:
        hook.remove()
    assert len(tokens) == 2
    assert done[0].reason == "error"
    assert "boom" in (done[0].error or "")


def test_text_is_held_back_until_a_character_is_complete(engine, loaded) -> None:
    # "é" is two bytes; the tiny byte-level tokenizer has a token for each byte.
    ids = loaded.tokenizer.encode("é")
    assert len(ids) == 2
    detokenizer = Detokenizer(loaded.tokenizer)
    detokenizer.add(ids[0])
    assert detokenizer.delta() == ""
    detokenizer.add(ids[1])
    assert detokenizer.delta() == "é"


def test_incremental_text_equals_decoding_the_whole_answer(loaded) -> None:
    # Random ids split characters, run spaces together and mix special tokens: the window scheme must
    # still give exactly what decoding everything at once gives, and hold back a stop sequence's start.
    ids = torch.randint(0, loaded.tokenizer.vocab_size, (300,), generator=torch.Generator().manual_seed(3))
    whole = loaded.tokenizer.decode(ids.tolist(), skip_special_tokens=False)
    detokenizer = Detokenizer(loaded.tokenizer)
    shown = ""
    for i in ids.tolist():
        detokenizer.add(i)
        shown += detokenizer.delta()
    detokenizer.flush()
    shown += detokenizer.delta(final=True)
    assert shown == whole == detokenizer.text
    stop = next(whole[k : k + 3] for k in range(40, len(whole)) if "\ufffd" not in whole[k : k + 3])
    cut = Detokenizer(loaded.tokenizer, [stop])
    streamed = ""
    for i in ids.tolist():
        cut.add(i)
        streamed += cut.delta()
        assert len(streamed) <= whole.find(stop)  # never a character of the stop sequence or after it
    assert cut.stopped
    assert cut.text == whole[: whole.find(stop)]
    assert streamed + cut.delta(final=True) == cut.text


def test_requests_are_validated() -> None:
    with pytest.raises(ValueError):
        GenerationRequest()
    with pytest.raises(ValueError):
        GenerationRequest(prompt_ids=[1], best_of=2, num_beams=2)
    with pytest.raises(ValueError):
        GenerationRequest(prompt_ids=[1], max_new_tokens=0)
    assert dataclasses.replace(GenerationRequest(prompt_ids=[1]), seed=3).seed == 3


@pytest.mark.integration
def test_real_model_answers_paris(real_model_store) -> None:
    from llmcore.pulls import DEFAULT_MODEL

    real = load_model(real_model_store, DEFAULT_MODEL, device="cpu")
    with Engine(real) as engine:
        events = engine.generate(
            GenerationRequest(
                messages=[{"role": "user", "content": "What is the capital of France?"}],
                sampling=GREEDY,
                max_new_tokens=64,
            )
        )
    tokens, stats, done = split(events)
    assert tokens
    assert done[0].reason == "stop"
    assert "".join(t.text for t in tokens) == done[0].text
    assert "Paris" in done[0].text
    assert stats[0].provenance["model"] == DEFAULT_MODEL


def in_thread(fn):
    """fn() run in a new thread (threads take PyTorch's thread count when they first touch it)."""
    import threading

    result = {}
    thread = threading.Thread(target=lambda: result.update(value=fn()))
    thread.start()
    thread.join()
    return result["value"]


def test_an_engine_thread_takes_its_own_thread_count_and_leaves_others_theirs() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:

        def engine_like() -> tuple[int, int]:
            own_threads(1)
            return torch.get_num_threads(), in_thread(torch.get_num_threads)

        mine, started_after = in_thread(engine_like)
        assert mine == 1
        assert started_after == 3  # a thread started later still gets the process setting
        assert in_thread(torch.get_num_threads) == 3
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_the_engine_decodes_at_its_thread_count_and_prefills_long_prompts_wider(loaded, monkeypatch) -> None:
    from llmcore.engine import runner

    # The tiny model's context (256) is below the default threshold: a lower one shows the mechanism.
    monkeypatch.setattr(runner, "PARALLEL_PREFILL_TOKENS", 160)
    PARALLEL_PREFILL_TOKENS = runner.PARALLEL_PREFILL_TOKENS
    with pytest.raises(ValueError, match="at least 1"):
        Engine(loaded, threads=0)
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # the process setting, which new threads (the engine's) start with
    try:
        with Engine(loaded, threads=1) as engine:
            seen: list[tuple[int, int]] = []  # (tokens in, threads) per forward pass

            def counting(module, args):
                seen.append((args[0].shape[1], torch.get_num_threads()))  # each pass embeds its ids first

            engine.model.get_input_embeddings().register_forward_pre_hook(counting)
            long_prompt = [5] * (PARALLEL_PREFILL_TOKENS + 10)
            for ids in (prompt(loaded), long_prompt):
                tokens, _, _ = split(engine.generate(request(loaded, prompt_ids=ids, max_new_tokens=3)))
                assert len(tokens) == 3
            assert in_thread(torch.get_num_threads) == 3  # threads started meanwhile keep the setting
    finally:
        torch.set_num_threads(before)
    short = len(prompt(loaded))
    assert seen == [(short, 1), (1, 1), (1, 1), (len(long_prompt), 3), (1, 1), (1, 1)]


def test_a_sampled_token_below_the_top_alternatives_is_listed_after_them_with_its_rank(
    engine, loaded
) -> None:
    """One alternative asked, a hot sampler: the drawn tokens that were not the likeliest follow the top
    one, with their rank in the distribution they were drawn from."""
    hot = SamplingConfig(temperature=5.0)
    tokens, _, _ = split(engine.generate(request(loaded, top_alternatives=1, sampling=hot, seed=3)))
    below = [t for t in tokens if t.alternatives[0].id != t.id]
    assert below, "a hot sampler drew some token that was not the likeliest"
    for t in tokens:
        assert t.alternatives[0].rank == 1
        chosen = [a for a in t.alternatives if a.id == t.id]
        assert len(chosen) == 1
        assert chosen[0].prob == pytest.approx(t.prob, rel=1e-4)
    for t in below:
        assert len(t.alternatives) == 2
        assert t.alternatives[1].rank > 1
        assert t.alternatives[1].prob <= t.alternatives[0].prob
