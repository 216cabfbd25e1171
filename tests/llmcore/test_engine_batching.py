"""Continuous batching, admission, the prefix cache and speculative decoding, on the tiny model."""

from __future__ import annotations

import collections
import math
from typing import Any

import pytest
import torch

from llmcore.engine import (
    DoneEvent,
    Engine,
    EngineLimits,
    GenerationRequest,
    PrefillEvent,
    QueuedEvent,
    SpeculativeConfig,
    StatsEvent,
    TokenEvent,
)
from llmcore.engine.kv_cache import BLOCK_TOKENS, KVShape, PrefixCache, SlotCache
from llmcore.engine.speculative import prompt_lookup, verify
from llmcore.loading import load_model
from llmcore.sampling import SamplingConfig, generator_for

GREEDY = SamplingConfig(temperature=0)
RANDOM = SamplingConfig(temperature=1.0, top_k=40)


@pytest.fixture
def loaded(store, tiny_model):
    return load_model(store, "tiny-llama", device="cpu")


def ids(loaded, text: str) -> list[int]:
    return list(loaded.tokenizer.encode(text))


def run(engine: Engine, request: GenerationRequest) -> tuple[list[TokenEvent], StatsEvent, DoneEvent]:
    events = engine.generate(request)
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    stats = next(e for e in events if isinstance(e, StatsEvent))
    done = events[-1]
    assert isinstance(done, DoneEvent)
    return tokens, stats, done


def texts(n: int) -> list[str]:
    return [
        f"Request number {i} asks about {['cats', 'dogs', 'birds', 'fish'][i % 4]}" * (1 + i % 3)
        for i in range(n)
    ]


def test_eight_requests_batched_give_their_solo_tokens(loaded) -> None:
    requests = [
        GenerationRequest(
            prompt_ids=ids(loaded, t),
            sampling=RANDOM,
            seed=i,
            max_new_tokens=20 + 3 * i,
            ignore_stop_tokens=True,
        )
        for i, t in enumerate(texts(8))
    ]
    with Engine(loaded, limits=EngineLimits(prefix_cache_mb=0)) as engine:
        solo = [[t.id for t in run(engine, r)[0]] for r in requests]
        streams = [engine.submit(r) for r in requests]
        together = [s.events() for s in streams]
        passes = engine.runner.forward_passes
    for alone, events in zip(solo, together, strict=True):
        assert [e.id for e in events if isinstance(e, TokenEvent)] == alone
    stats = [next(e for e in ev if isinstance(e, StatsEvent)) for ev in together]
    assert max(s.batch_size_max for s in stats) == 8  # all eight shared decode passes
    # One pass per step for all, not one per stream: far fewer passes than tokens.
    assert sum(len(a) for a in solo) > 3 * (passes - sum(len(a) + 1 for a in solo))


def test_a_request_joins_running_streams_and_finished_ones_leave(loaded) -> None:
    with Engine(loaded) as engine:
        long = engine.submit(
            GenerationRequest(prompt_ids=[5, 6, 7], max_new_tokens=120, ignore_stop_tokens=True)
        )
        seen: list[TokenEvent] = []
        joined = None
        for event in long:
            if isinstance(event, TokenEvent):
                seen.append(event)
                if event.index == 10:
                    joined = engine.submit(
                        GenerationRequest(prompt_ids=[9, 9], max_new_tokens=10, ignore_stop_tokens=True)
                    )
        assert joined is not None
        short = [e for e in joined.events() if isinstance(e, TokenEvent)]
    assert len(short) == 10
    assert all(t.batch_size == 2 for t in short[1:])
    sizes = [t.batch_size for t in seen]
    assert sizes[0] == 1
    assert 2 in sizes
    assert sizes[-1] == 1


def test_a_failing_and_a_cancelled_stream_leave_the_others_untouched(loaded) -> None:
    good = GenerationRequest(prompt_ids=ids(loaded, "hello"), sampling=RANDOM, seed=3, max_new_tokens=30,
                             ignore_stop_tokens=True)  # fmt: skip
    with Engine(loaded) as engine:
        alone = [t.id for t in run(engine, good)[0]]
        bad = engine.submit(GenerationRequest(prompt_ids=[10**6], max_new_tokens=5))
        cancelled = engine.submit(
            GenerationRequest(prompt_ids=[4, 5], max_new_tokens=200, ignore_stop_tokens=True)
        )
        stream = engine.submit(good)
        for event in cancelled:
            if isinstance(event, TokenEvent) and event.index == 3:
                cancelled.cancel()
        events = stream.events()
        bad_done = bad.events()[-1]
    assert isinstance(bad_done, DoneEvent)
    assert bad_done.reason == "error"
    assert "vocabulary" in (bad_done.error or "")
    assert [e.id for e in events if isinstance(e, TokenEvent)] == alone
    assert engine.scheduler.rows == []
    assert engine.runner.cache.allocated_bytes == 0


def test_a_full_engine_queues_in_order_and_says_how_many_are_ahead(loaded) -> None:
    limits = EngineLimits(max_sequences=2)
    request = GenerationRequest(prompt_ids=[3, 4, 5], max_new_tokens=40, ignore_stop_tokens=True)
    with Engine(loaded, limits=limits) as engine:
        streams = [engine.submit(request) for _ in range(5)]
        events = [s.events() for s in streams]
    queued = [[e for e in ev if isinstance(e, QueuedEvent)] for ev in events]
    assert not queued[0]
    assert not queued[1]
    assert [q[0].ahead for q in queued[2:]] == [0, 1, 2]
    assert queued[2][0].reason == "sequences"
    assert queued[4][-1].ahead < queued[4][0].ahead  # told again as the line moved
    for ev in events:
        assert [e for e in ev if isinstance(e, DoneEvent)][0].reason == "length"
        assert len([e for e in ev if isinstance(e, TokenEvent)]) == 40
    firsts = [next(e.time for e in ev if isinstance(e, TokenEvent)) for ev in events]
    assert firsts == sorted(firsts)  # served in the order they came
    stats = [next(e for e in ev if isinstance(e, StatsEvent)) for ev in events]
    assert stats[4].queued_s > stats[0].queued_s


def test_the_kv_budget_is_explicit(loaded) -> None:
    token_bytes = KVShape.of(loaded.model.config, torch.float32).token_bytes
    mb = 100 * token_bytes / 2**20  # room for 100 positions
    with Engine(loaded, limits=EngineLimits(kv_cache_mb=mb)) as engine:
        _, _, done = run(engine, GenerationRequest(prompt_ids=[3] * 20, max_new_tokens=200))
        assert done.reason == "error"
        assert "KV cache" in (done.error or "")
        assert "budget" in (done.error or "")
        a = engine.submit(GenerationRequest(prompt_ids=[3] * 10, max_new_tokens=50, ignore_stop_tokens=True))
        b = engine.submit(GenerationRequest(prompt_ids=[4] * 10, max_new_tokens=50, ignore_stop_tokens=True))
        ea, eb = a.events(), b.events()
    assert not any(isinstance(e, QueuedEvent) for e in ea)
    waited = [e for e in eb if isinstance(e, QueuedEvent)]
    assert waited
    assert waited[0].reason == "kv_cache"
    last = eb[-1]
    assert isinstance(last, DoneEvent)
    assert last.reason == "length"


def test_a_long_prompt_is_prefilled_in_chunks_while_a_stream_flows(loaded) -> None:
    limits = EngineLimits(prefill_chunk=16, prefix_cache_mb=0)
    long_prompt = (ids(loaded, "a long prompt about many things ") * 10)[:150]
    request = GenerationRequest(
        prompt_ids=long_prompt, sampling=GREEDY, max_new_tokens=8, ignore_stop_tokens=True
    )
    with Engine(loaded, limits=limits) as engine:
        whole = [t.id for t in run(engine, request)[0]]
        running = engine.submit(GenerationRequest(prompt_ids=[5], max_new_tokens=60, ignore_stop_tokens=True))
        next(iter(running))
        chunked = engine.submit(request)
        flowing = running.events()
        got = [t.id for t in chunked.events() if isinstance(t, TokenEvent)]
    assert got == whole
    # While the 150-token prompt was computed in 10 chunks, the running stream kept getting tokens.
    first_of_long = next(sid for sid, _ in engine.schedule if sid == chunked.id)
    assert first_of_long
    assert len([e for e in flowing if isinstance(e, TokenEvent)]) == 59


# --- the prefix cache ---
def test_prefix_cache_reuses_a_shared_prefix_and_changes_nothing(loaded) -> None:
    system = ids(loaded, "You are a helpful assistant who answers in one line. " * 3)
    questions = [ids(loaded, q) for q in ("What is a cat?", "Why is the sky blue?", "Name a prime.")]
    requests = [
        GenerationRequest(
            prompt_ids=system + q, sampling=RANDOM, seed=11, max_new_tokens=24, ignore_stop_tokens=True
        )
        for q in questions
    ]
    with Engine(loaded, limits=EngineLimits(prefix_cache_mb=0)) as plain:
        without = [run(plain, r) for r in requests]
    with Engine(loaded) as cached:
        with_cache = [run(cached, r) for r in requests]
        prefix = cached.scheduler.prefix
    for (t0, s0, _), (t1, _s1, _) in zip(without, with_cache, strict=True):
        assert [t.id for t in t0] == [t.id for t in t1]
        for a, b in zip(t0, t1, strict=True):
            assert math.isclose(a.model_logprob, b.model_logprob, abs_tol=1e-4)
        assert s0.cached_prompt_tokens == 0
    assert with_cache[0][1].cached_prompt_tokens == 0
    shared = (len(system) // BLOCK_TOKENS) * BLOCK_TOKENS
    assert all(s.cached_prompt_tokens >= shared for _, s, _ in with_cache[1:])
    assert prefix.hit_tokens > 0
    assert prefix.blocks > 0


def test_the_next_turn_reuses_the_previous_answer(loaded) -> None:
    first = ids(loaded, "user: tell me a story about a fox\nassistant:")
    with Engine(loaded) as engine:
        tokens, _, _ = run(
            engine, GenerationRequest(prompt_ids=first, max_new_tokens=40, ignore_stop_tokens=True)
        )
        answer = [t.id for t in tokens]
        second = first + answer + ids(loaded, "\nuser: and then?\nassistant:")
        _, stats, _ = run(engine, GenerationRequest(prompt_ids=second, max_new_tokens=5))
        _, fresh, _ = run(
            engine, GenerationRequest(prompt_ids=second, max_new_tokens=5, use_prefix_cache=False)
        )
    # Everything but the answer's last token (never fed to the model) is cached, in whole blocks.
    assert stats.cached_prompt_tokens == ((len(first) + len(answer) - 1) // BLOCK_TOKENS) * BLOCK_TOKENS
    assert fresh.cached_prompt_tokens == 0


def test_prefix_blocks_are_evicted_least_recently_used_leaves_first(loaded) -> None:
    shape = KVShape.of(loaded.model.config, torch.float32)
    cache = SlotCache(shape, torch.device("cpu"))
    cache.reserve(1, 64)
    for layer in range(shape.layers):
        cache.keys[layer].normal_()
        cache.values[layer].normal_()
    block_bytes = BLOCK_TOKENS * shape.token_bytes
    prefix = PrefixCache(budget_bytes=3 * block_bytes)
    a = list(range(32))  # two blocks: a0 -> a1
    b = list(range(100, 116))
    c = list(range(200, 216))
    prefix.insert(a, cache, 0)
    prefix.insert(b, cache, 0)
    assert prefix.blocks == 3
    prefix.insert(c, cache, 0)  # full: a0 is the oldest but a1 extends it, so the leaf a1 goes first
    assert len(prefix.match(a, 32)) == 1
    assert len(prefix.match(b, 16)) == 1  # now c is the least recently used
    prefix.insert(list(range(300, 316)), cache, 0)
    assert prefix.match(c, 16) == []
    assert len(prefix.match(a, 32)) == 1
    assert len(prefix.match(b, 16)) == 1
    assert prefix.evicted_blocks == 2
    got = prefix.match(a, 32)[0].kv
    assert torch.equal(got, cache.read(0, 0, BLOCK_TOKENS))  # a block holds exactly its positions' KV
    assert prefix.bytes <= prefix.budget_bytes


# --- speculative decoding ---
def test_prompt_lookup_continues_an_earlier_occurrence() -> None:
    assert prompt_lookup([1, 2, 3, 4, 9, 1, 2, 3], 3, 3) == [4, 9, 1]
    assert prompt_lookup([5, 6, 7, 5], 2, 3) == [6, 7]  # falls back to a 1-gram
    assert prompt_lookup([1, 2, 3], 4, 3) == []
    assert prompt_lookup([5, 6, 7, 5], 2, 3, min_ngram=2) == []  # auto's rule: no lone-token matches


def test_greedy_speculative_output_equals_plain_greedy(loaded) -> None:
    text = ids(loaded, "the cat sat on the mat and the cat sat on the hat and the cat ")
    plain = GenerationRequest(prompt_ids=text, sampling=GREEDY, max_new_tokens=40, ignore_stop_tokens=True)
    spec = GenerationRequest(
        prompt_ids=text, sampling=GREEDY, max_new_tokens=40, ignore_stop_tokens=True,
        speculative=SpeculativeConfig(method="prompt_lookup", num_tokens=4),
    )  # fmt: skip
    with Engine(loaded, limits=EngineLimits(prefix_cache_mb=0)) as engine:
        want, _, _ = run(engine, plain)
        got, stats, _ = run(engine, spec)
    assert [t.id for t in got] == [t.id for t in want]
    assert stats.speculative["proposed"] > 0
    assert stats.speculative["verify_passes"] > 0
    assert stats.speculative["accepted"] == sum(t.speculative for t in got)


def test_draft_model_speculation_is_exact_and_a_foreign_tokenizer_is_refused(loaded, store) -> None:
    text = ids(loaded, "once upon a time there was a")
    plain = GenerationRequest(prompt_ids=text, sampling=GREEDY, max_new_tokens=30, ignore_stop_tokens=True)
    spec = GenerationRequest(
        prompt_ids=text, sampling=GREEDY, max_new_tokens=30, ignore_stop_tokens=True,
        speculative=SpeculativeConfig(method="draft", draft_model="tiny-llama", num_tokens=3),
    )  # fmt: skip
    with Engine(loaded, drafts=lambda name: load_model(store, name, device="cpu")) as engine:
        want, _, _ = run(engine, plain)
        got, stats, _ = run(engine, spec)
        # The model drafting for itself: every greedy proposal is what the model would have said.
        assert [t.id for t in got] == [t.id for t in want]
        assert stats.speculative["acceptance_rate"] > 0.9
    with Engine(loaded) as engine:
        _, _, done = run(engine, spec)
    assert done.reason == "error"
    assert "draft" in (done.error or "")


def test_verification_samples_exactly_the_models_distribution() -> None:
    # A target p and a proposal q over 6 tokens: whatever q is, the first token that verification emits
    # must be distributed as p (the accept/reject rule's guarantee). 20,000 draws, 5 standard errors.
    p = torch.tensor([0.05, 0.4, 0.25, 0.1, 0.15, 0.05])
    q = torch.tensor([0.3, 0.1, 0.1, 0.3, 0.1, 0.1])
    generator = generator_for(0)
    draws = 20_000
    counts: collections.Counter[int] = collections.Counter()
    lookup_counts: collections.Counter[int] = collections.Counter()
    for _ in range(draws):
        proposal = int(torch.multinomial(q, 1, generator=generator))
        out = verify([proposal], [q], lambda i, kept: p, greedy=False, generator=generator)
        counts[out.tokens[0]] += 1
        fixed = verify([3], None, lambda i, kept: p, greedy=False, generator=generator)  # prompt lookup
        lookup_counts[fixed.tokens[0]] += 1
    for token in range(6):
        se = math.sqrt(float(p[token]) * (1 - float(p[token])) / draws)
        assert abs(counts[token] / draws - float(p[token])) < 5 * se, (token, counts)
        assert abs(lookup_counts[token] / draws - float(p[token])) < 5 * se, (token, lookup_counts)


def test_auto_speculation_stops_proposing_when_it_does_not_pay(loaded) -> None:
    # Random weights on random text: prompt lookup's guesses are almost never kept, so auto backs off.
    request = GenerationRequest(
        prompt_ids=ids(loaded, "abcabcabcabc xyz"), sampling=RANDOM, seed=5, max_new_tokens=120,
        ignore_stop_tokens=True, speculative=SpeculativeConfig(method="auto"),
    )  # fmt: skip
    with Engine(loaded) as engine:
        run(engine, GenerationRequest(prompt_ids=[3, 4], max_new_tokens=8))  # measures a plain step
        _, stats, _ = run(engine, request)
    assert stats.speculative["skipped_steps"] > stats.speculative["verify_passes"]


def test_engine_metrics_count_what_runs(loaded) -> None:
    numbers: dict[str, Any] = {}
    with Engine(loaded) as engine:

        def during_a_pass(module, args):
            # runs in the engine's thread, in the middle of a step: the sequence is certainly running
            if not numbers and engine.scheduler.totals["generated_tokens"] >= 5:
                numbers.update(engine.scheduler.metrics())

        hook = engine.model.get_input_embeddings().register_forward_pre_hook(during_a_pass)
        request = GenerationRequest(prompt_ids=[3] * 40, max_new_tokens=200, ignore_stop_tokens=True)
        engine.generate(request)
        hook.remove()
        after = engine.metrics()
    assert numbers["active_sequences"] == 1
    assert numbers["kv_cache_bytes"] > 0
    assert after["active_sequences"] == 0
    assert after["generated_tokens_total"] == 200
    assert after["finished"]["length"] == 1
    assert after["prefix_cache"]["blocks"] > 0


def test_prompts_that_arrive_together_are_prefilled_in_one_pass(loaded) -> None:
    from llmcore.engine.sequence import Job
    from llmcore.engine.stream import GenerationStream

    prompts = [ids(loaded, t) for t in ("short", "a somewhat longer prompt", "mid length one")]
    requests = [
        GenerationRequest(prompt_ids=p, sampling=GREEDY, max_new_tokens=6, ignore_stop_tokens=True)
        for p in prompts
    ]
    with Engine(loaded, limits=EngineLimits(prefix_cache_mb=0)) as engine:
        solo = [[t.id for t in run(engine, r)[0]] for r in requests]
    engine = Engine(loaded, limits=EngineLimits(prefix_cache_mb=0))  # driven by hand: no thread
    streams = [GenerationStream(r, i) for i, r in enumerate(requests)]
    with torch.inference_mode():
        for stream in streams:
            engine.scheduler.add(Job(stream=stream))
        engine.scheduler.step()
        assert engine.runner.forward_passes == 1  # the three prompts, padded to the longest, at once
        while engine.scheduler.busy:
            engine.scheduler.step()
    assert engine.runner.forward_passes == 6  # then one decode pass per further token, for all three
    for stream, alone in zip(streams, solo, strict=True):
        assert [e.id for e in stream.events() if isinstance(e, TokenEvent)] == alone


def test_a_request_cancelled_while_waiting_leaves_the_line(loaded) -> None:
    from llmcore.engine.sequence import Job
    from llmcore.engine.stream import GenerationStream

    engine = Engine(loaded, limits=EngineLimits(max_sequences=1))  # driven by hand: no thread
    request = GenerationRequest(prompt_ids=[3, 4], max_new_tokens=30, ignore_stop_tokens=True)
    streams = [GenerationStream(request, i) for i in range(3)]
    with torch.inference_mode():
        for stream in streams:
            engine.scheduler.add(Job(stream=stream))
        engine.scheduler.step()  # the first runs, two wait
        streams[1].cancel()
        engine.scheduler.step()
        assert len(engine.scheduler.waiting) == 1
        while engine.scheduler.busy:
            engine.scheduler.step()
    events = [s.events() for s in streams]
    last = [e for e in events[1] if isinstance(e, DoneEvent)][0]
    assert last.reason == "cancelled"
    assert not any(isinstance(e, TokenEvent) for e in events[1])
    assert [q.ahead for q in events[2] if isinstance(q, QueuedEvent)][-1] == 0  # it moved up at once
    assert [e for e in events[2] if isinstance(e, DoneEvent)][0].reason == "length"


def test_a_late_starting_row_beside_a_long_chunk_is_prefilled_right(loaded) -> None:
    # B's first 32 tokens come from the prefix cache, so its chunk starts at 32; padded to C's 40-token
    # chunk its positions run past the cache's capacity (about 44): found by 20 chats at once on Redis.
    from llmcore.engine.sequence import Job
    from llmcore.engine.stream import GenerationStream

    a = (ids(loaded, "a shared system prompt for everybody who chats here today ") * 3)[:48]
    b = a[:32] + ids(loaded, "hi")
    c = (ids(loaded, "an entirely different prompt") * 4)[:40]

    def greedy(p: list[int]) -> GenerationRequest:
        return GenerationRequest(prompt_ids=p, sampling=GREEDY, max_new_tokens=4, ignore_stop_tokens=True)

    with Engine(loaded, limits=EngineLimits(prefix_cache_mb=0)) as plain:
        want = [[t.id for t in run(plain, greedy(p))[0]] for p in (b, c)]
    engine = Engine(loaded)  # driven by hand: no thread
    with torch.inference_mode():
        engine.scheduler.add(Job(stream=GenerationStream(greedy(a), 0)))
        while engine.scheduler.busy:
            engine.scheduler.step()
        streams = [GenerationStream(greedy(p), i + 1) for i, p in enumerate((b, c))]
        for stream in streams:
            engine.scheduler.add(Job(stream=stream))
        while engine.scheduler.busy:
            engine.scheduler.step()
    events = [s.events() for s in streams]
    assert [e for e in events[0] if isinstance(e, StatsEvent)][0].cached_prompt_tokens == 32
    for got, expected in zip(events, want, strict=True):
        assert [e.id for e in got if isinstance(e, TokenEvent)] == expected, got[-1]


def test_a_long_prompt_reports_its_progress_before_the_first_token(loaded) -> None:
    """Read a chunk a step, a long prompt says how far it is (the chat shows it before the first token);
    one that fits in one chunk says nothing."""
    prompt = [(7 * i + 3) % 100 + 10 for i in range(50)]
    with Engine(loaded, limits=EngineLimits(prefill_chunk=16)) as engine:
        events = engine.generate(GenerationRequest(prompt_ids=prompt, sampling=GREEDY, max_new_tokens=2))
        short = engine.generate(GenerationRequest(prompt_ids=prompt[:12], sampling=GREEDY, max_new_tokens=2))
    progress = [e for e in events if isinstance(e, PrefillEvent)]
    assert [(e.done, e.total) for e in progress] == [(16, 50), (32, 50), (48, 50)]
    first_token = next(i for i, e in enumerate(events) if isinstance(e, TokenEvent))
    assert all(events.index(e) < first_token for e in progress)
    assert not any(isinstance(e, PrefillEvent) for e in short)
