"""The scheduler: admission, continuous batching, chunked prefill, speculation, cancellation.

Each `step()`:
1. ends cancelled jobs and admits waiting ones in order while the limits allow (max sequences, the KV
   cache budget); the others hear how many are ahead of them;
2. runs one decode pass over every decoding sequence at once (a sequence whose proposer has guesses runs
   its verification pass instead); a beam search's beams are rows of that pass like any other sequence,
   and after it each beam's row takes its parent's KV (`llmcore/engine/beam.py` keeps the books);
3. computes one chunk of the oldest unfinished prompt, so a long prompt never stalls running streams for
   more than one chunk.
Sequences that finish leave the batch at once; their rows are given to the next waiting request.
Every sequence samples with its own seeded generator, so a request gives the same tokens alone or batched.

A request is made ready to admit by `llmcore/engine/prepare.py`; what a job reports (its StatsEvent and
provenance, best_of's candidates, each token's alternatives, the Engine page's numbers) is put together by
`llmcore/engine/records.py`.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from llmcore.engine.draft import DraftProposer
from llmcore.engine.kv_cache import BLOCK_TOKENS, PrefixCache
from llmcore.engine.prepare import prepare
from llmcore.engine.records import TokenLabels, engine_metrics, ranked, stats_event
from llmcore.engine.runner import ModelRunner
from llmcore.engine.sequence import Job, JobState, Sequence
from llmcore.engine.speculative import prompt_lookup, verify
from llmcore.engine.types import (
    Alternative,
    Candidate,
    DoneEvent,
    EngineLimits,
    FinishReason,
    PrefillEvent,
    QueuedEvent,
    TokenEvent,
)
from llmcore.grammar import Grammars, grammars_for
from llmcore.sampling import apply_repetition_penalty, warp

MB = 2**20


class Scheduler:
    def __init__(
        self,
        runner: ModelRunner,
        limits: EngineLimits,
        drafts: Callable[[str], Any] | None = None,
        schedule_log_size: int = 10_000,
    ) -> None:
        self.runner = runner
        self.loaded = runner.loaded
        self.tokenizer = runner.loaded.tokenizer
        self.limits = limits
        self.stop_ids = set(runner.loaded.stop_token_ids)
        # A prompt-tuned model's virtual tokens take positions too: what is left is the text's.
        self.context_length = runner.loaded.context_length
        self.cache = runner.cache
        self.budget_bytes = int(limits.kv_cache_mb * MB)
        # The prefix cache keys blocks by tokens alone; a prompt-tuned model's virtual tokens come first
        # in every row and are not tokens, so such a model gets no prefix cache.
        prefix_bytes = int(limits.prefix_cache_mb * MB) if runner.virtual_tokens == 0 else 0
        self.prefix = PrefixCache(prefix_bytes)
        self.waiting: collections.deque[Job] = collections.deque()
        self.jobs: list[Job] = []  # admitted, in admission order
        self.rows: list[Sequence] = []  # rows[i] holds row i of the KV cache
        self._drafts_loader = drafts
        self._drafts: dict[str, DraftProposer] = {}
        # (stream id, token index) in the order tokens were produced: lets tests see the interleaving.
        self.schedule: collections.deque[tuple[int, int]] = collections.deque(maxlen=schedule_log_size)
        self.plain_step_s: float | None = None  # EMA of a one-sequence decode pass (speculation's anchor)
        self.totals = collections.Counter[str]()
        self.labels = TokenLabels(self.tokenizer)
        self.recent_tokens: collections.deque[float] = collections.deque(maxlen=4096)  # token times
        self._grammars: Grammars | None = None  # made with the first constrained request

    # --- admission ---
    def add(self, job: Job) -> None:
        if len(self.waiting) >= self.limits.max_waiting:
            self.finish(job, FinishReason.ERROR, f"the engine has {len(self.waiting)} requests waiting")
            return
        self.waiting.append(job)

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.jobs)

    def _admit(self) -> None:
        while self.waiting:
            job = self.waiting[0]
            if job.stream.cancelled:
                self.waiting.popleft()
                self.finish(job, FinishReason.CANCELLED)
                continue
            if not job.prepared:
                try:
                    prepare(job, self.runner, self.stop_ids, self._grammars_for, self._draft)
                except Exception as exc:  # noqa: BLE001 - a bad request ends its own stream
                    self.waiting.popleft()
                    self.finish(job, FinishReason.ERROR, f"{type(exc).__name__}: {exc}")
                    continue
            full = self._full(job)
            if full is None:
                self.waiting.popleft()
                self._place(job)
                continue
            if full == "never":
                self.waiting.popleft()
                need = self.cache.bytes_for(len(job.seqs), job.positions) / MB
                self.finish(
                    job,
                    FinishReason.ERROR,
                    f"ValueError: this request needs {need:.0f} MB of KV cache ({len(job.seqs)} x "
                    f"{job.positions} positions); the engine's budget is {self.limits.kv_cache_mb:.0f} MB",
                )
                continue
            break
        for ahead, job in enumerate(self.waiting):
            reason = (self._full(job) or "sequences") if ahead == 0 else "queue"
            key = (ahead, reason)
            if job.last_queued != key:
                job.last_queued = key
                job.stream.push(QueuedEvent(ahead=ahead, running=len(self.jobs), reason=reason))

    def _full(self, job: Job) -> str | None:
        """None when the job fits now; "sequences" or "kv_cache" when it must wait; "never" if it
        cannot fit even alone."""
        rows = len(self.rows) + len(job.seqs)
        positions = max([job.positions, *(j.positions for j in self.jobs)])
        if self.cache.bytes_for(len(job.seqs), job.positions) > self.budget_bytes:
            return "never"
        if len(job.seqs) > self.limits.max_sequences:
            return "never"
        if rows > self.limits.max_sequences:
            return "sequences"
        if self.cache.bytes_for(rows, positions) > self.budget_bytes:
            return "kv_cache"
        return None

    def _grammars_for(self) -> Grammars:
        """The tokenizer's grammars, compiled with the first constrained request."""
        if self._grammars is None:
            self._grammars = grammars_for(self.tokenizer, self.runner.vocab_size, sorted(self.stop_ids))
        return self._grammars

    def _place(self, job: Job) -> None:
        """Give an admitted job its rows."""
        rows = len(self.rows) + len(job.seqs)
        positions = max([job.positions, *(j.positions for j in self.jobs)])
        self.cache.reserve(rows, positions)
        for seq in job.seqs:
            seq.row = len(self.rows)
            self.rows.append(seq)
        job.state = JobState.PREFILL
        job.admitted_at = time.perf_counter()
        self.jobs.append(job)
        request = job.stream.request
        if request.use_prefix_cache and self.prefix.enabled:
            blocks = self.prefix.match(job.prompt, limit=len(job.prompt) - 1)
            if blocks:
                lead = job.seqs[0]
                self.cache.write(lead.row, 0, [b.kv for b in blocks])
                job.cached_tokens = job.prefilled = len(blocks) * BLOCK_TOKENS
                lead.length = job.prefilled

    def _release(self, seq: Sequence) -> None:
        """Free a finished sequence's row: the last row moves into it, so rows stay 0..n-1."""
        if seq.row < 0:
            return
        last = self.rows.pop()
        if last is not seq:
            self.cache.copy_row(last.row, seq.row, last.length)
            last.row = seq.row
            self.rows[seq.row] = last
        seq.row = -1
        for draft in self._drafts.values():
            draft.forget(id(seq))
        if not self.rows:
            self.cache.release()  # an idle engine holds no KV memory

    # --- one step ---
    def step(self) -> None:
        for job in [j for j in (*self.jobs, *self.waiting) if j.stream.cancelled]:
            if job in self.waiting:  # left the line: the ones behind it move up
                self.waiting.remove(job)
            self.finish(job, FinishReason.CANCELLED)
        self._admit()
        decoding = [j for j in self.jobs if j.state is JobState.DECODE and j.running]
        plain: list[Job] = []
        for job in decoding:
            if not (job.stream.request.speculative.on and self._guard(job, self._speculate, job, decoding)):
                plain.append(job)
        if plain:
            self._decode(plain)
        prefilling = [j for j in self.jobs if j.state is JobState.PREFILL]
        if prefilling:
            self._prefill(prefilling)
        for job in [j for j in self.jobs if not j.running]:
            self.finish(job, None)

    def _guard(self, job: Job, work: Callable[..., Any], *args: Any) -> Any:
        """Run one job's own work; an error ends that job only."""
        try:
            return work(*args)
        except Exception as exc:  # noqa: BLE001 - reported to the stream's consumer
            self.finish(job, FinishReason.ERROR, f"{type(exc).__name__}: {exc}")
            return True

    def _decode(self, jobs: list[Job]) -> None:
        """One forward pass for every row; rows of other jobs (a prompt still being computed, a
        sequence that verified instead) get a throwaway position that their next pass overwrites."""
        wanted = {id(s) for j in jobs for s in j.running if s.pending is not None}
        if not wanted:
            return
        tokens = [s.pending if id(s) in wanted and s.pending is not None else 0 for s in self.rows]
        lengths = [s.length for s in self.rows]
        row_of = {id(s): i for i, s in enumerate(self.rows)}  # rows may move if a job fails below
        started = time.perf_counter()
        try:
            logits = self.runner.decode(tokens, lengths)
        except Exception as exc:  # noqa: BLE001 - the pass was shared: every job in it ends
            for job in jobs:
                self.finish(job, FinishReason.ERROR, f"{type(exc).__name__}: {exc}")
            return
        if len(self.rows) == 1:
            elapsed = time.perf_counter() - started
            self.plain_step_s = (
                elapsed if self.plain_step_s is None else 0.9 * self.plain_step_s + 0.1 * elapsed
            )
        batch = len(wanted)
        for job in jobs:
            if job.beam is not None:
                for seq in job.seqs:
                    seq.length += 1
                beams = torch.stack([logits[row_of[id(seq)]] for seq in job.seqs])
                self._guard(job, self._beam_step, job, beams, batch)
                continue
            for seq in job.running:
                if id(seq) in wanted:
                    seq.length += 1
                    self._guard(job, self._sample, job, seq, logits[row_of[id(seq)]], batch)

    def _prefill(self, jobs: list[Job]) -> None:
        """One pass over the next prompt chunks of the oldest prefilling jobs, ENGINE_PREFILL_CHUNK tokens
        in all: several short prompts that arrive together are computed together (measured on the default
        model: eight 40-token chat prompts one by one took about 100 ms each)."""
        remaining = self.limits.prefill_chunk
        batch: list[tuple[Job, list[int]]] = []
        for job in jobs:
            chunk = job.prompt[job.prefilled : job.prefilled + remaining]
            batch.append((job, chunk))
            remaining -= len(chunk)
            # a prompt-tuned model's first pass puts its virtual tokens first: that one runs alone
            if remaining <= 0 or self.runner.virtual_tokens:
                break
        if len(batch) == 1:
            job, chunk = batch[0]
            self._guard(job, self._prefill_one, job, chunk)
            return
        try:
            rows = [job.seqs[0].row for job, _ in batch]
            starts = [job.seqs[0].length for job, _ in batch]
            logits = self.runner.prefill(rows, starts, [chunk for _, chunk in batch])
        except Exception as exc:  # noqa: BLE001 - the pass was shared: every job in it ends
            for job, _ in batch:
                self.finish(job, FinishReason.ERROR, f"{type(exc).__name__}: {exc}")
            return
        for i, (job, chunk) in enumerate(batch):
            job.seqs[0].length += len(chunk)
            job.prefilled += len(chunk)
            if job.prefilled == len(job.prompt):
                self._guard(job, self._prefilled, job, logits[i])
            else:
                job.stream.push(PrefillEvent(done=job.prefilled, total=len(job.prompt)))

    def _prefill_one(self, job: Job, chunk: list[int]) -> None:
        lead = job.seqs[0]
        pos = lead.length
        logits = self.runner.extend(lead.row, pos, chunk, prompt=True)
        lead.length = pos + len(chunk) + (self.runner.virtual_tokens if pos == 0 else 0)
        job.prefilled += len(chunk)
        if job.prefilled == len(job.prompt):
            self._prefilled(job, logits[-1])
        else:  # a long prompt, read a chunk a step: the page shows how far it is
            job.stream.push(PrefillEvent(done=job.prefilled, total=len(job.prompt)))

    def _prefilled(self, job: Job, logits: torch.Tensor) -> None:
        """The whole prompt is in the lead row: keep its blocks, start every candidate, sample."""
        lead = job.seqs[0]
        self.prefix.insert(job.prompt, self.cache, lead.row, self.runner.virtual_tokens)
        for seq in job.seqs[1:]:  # best_of: every candidate starts from the same computed prompt
            if job.beam is None:  # (a beam search's first step copies the rows it keeps)
                self.cache.copy_row(lead.row, seq.row, lead.length)
            seq.length = lead.length
        job.state = JobState.DECODE
        if job.beam is not None:
            job.beam_first_logits = logits
            self._beam_step(job, logits.expand(len(job.seqs), -1), 1)
            return
        for seq in job.seqs:
            self._sample(job, seq, logits, 1)

    # --- sampling and tokens ---
    def _sample(self, job: Job, seq: Sequence, logits: torch.Tensor, batch: int) -> None:
        config = job.stream.request.sampling
        history = job.prompt + seq.generated
        if seq.grammar is not None:  # before every stage, so each sees only the tokens it allows
            logits = seq.grammar.mask(logits)
        if config.greedy:
            # The temperature-0 limit keeps only the argmax of the penalized logits, and no filter ever
            # cuts the argmax: the same token as warp() then argmax, without building the one-hot.
            penalized = apply_repetition_penalty(logits, history, config.repetition_penalty)
            self._take(job, seq, int(torch.argmax(penalized)), logits, None, batch, speculative=False)
            return
        final = warp(logits, config, history)  # (V,) after penalty and filters
        token = int(torch.multinomial(torch.softmax(final, dim=-1), 1, generator=seq.generator))
        self._take(job, seq, token, logits, final, batch, speculative=False)

    def _take(
        self,
        job: Job,
        seq: Sequence,
        token: int,
        logits: torch.Tensor,
        final: torch.Tensor | None,
        batch: int,
        speculative: bool,
    ) -> None:
        """Append one token to a sequence and send its event (or end the sequence). `final`: the
        sampler's logits the token was drawn from; None for greedy (all probability on the token)."""
        request = job.stream.request
        self.schedule.append((job.stream.id, len(seq.generated)))
        job.batch_sizes.append(batch)
        if token in self.stop_ids and not request.ignore_stop_tokens:
            seq.reason = FinishReason.STOP  # the end-of-turn token ends the answer and is not part of it
            seq.pending = None
            seq.detokenizer.flush()
            return
        model_logprobs = torch.log_softmax(logits, dim=-1)
        model_logprob = float(model_logprobs[token])
        if final is None:
            logprob = 0.0
        elif final is logits:  # a sampler that changes nothing
            logprob = model_logprob
        else:
            logprob = float(torch.log_softmax(final, dim=-1)[token])
        seq.generated.append(token)
        seq.pending = token
        seq.model_logprobs.append(model_logprob)
        seq.detokenizer.add(token)
        complete = seq.grammar is not None and seq.grammar.advance(token)
        if seq.detokenizer.stopped:
            seq.reason = FinishReason.STOP_SEQUENCE
        elif complete:  # nothing can follow but the end of the answer
            seq.reason = FinishReason.STOP
        elif len(seq.generated) >= job.max_new:
            seq.reason = FinishReason.LENGTH
        if seq.reason is not None:
            seq.detokenizer.flush()
        delta = seq.detokenizer.delta(final=seq.reason is not None)
        alternatives: list[Alternative] = []
        if request.top_alternatives:
            # Greedy's sampler distribution is one-hot; its alternatives come from the model's (penalized)
            # distribution instead, which is what the token inspector needs to be useful.
            config = request.sampling
            shown = final
            if final is None or config.greedy:
                history = job.prompt + seq.generated[:-1]
                shown = warp(logits, dataclasses.replace(config, temperature=1.0), history)
            assert shown is not None
            top = model_logprobs if shown is logits else torch.log_softmax(shown, dim=-1)
            alternatives = self.labels.alternatives(top, request.top_alternatives, token)
        event = TokenEvent(
            index=len(seq.generated) - 1,
            id=token,
            text=delta,
            logprob=logprob,
            prob=math.exp(logprob),
            model_logprob=model_logprob,
            alternatives=alternatives,
            batch_size=batch,
            speculative=speculative,
        )
        now = time.perf_counter()
        job.first_token_at = job.first_token_at or now
        job.last_token_at = now
        self.recent_tokens.append(now)
        self.totals["generated_tokens"] += 1
        if len(job.seqs) > 1:
            seq.events.append(event)
        elif not self._deliver(job, event):  # cancelled while this token was computed
            seq.reason = FinishReason.CANCELLED

    def _deliver(self, job: Job, event: TokenEvent) -> bool:
        if not job.stream.push(event):
            return False
        job.shown += event.text
        return True

    # --- speculative decoding ---
    def _draft(self, name: str) -> DraftProposer:
        proposer = self._drafts.get(name)
        if proposer is None:
            if self._drafts_loader is None:
                raise ValueError("this engine has no draft models")
            proposer = DraftProposer(self._drafts_loader(name), self.loaded, self.limits.max_sequences)
            self._drafts[name] = proposer
        return proposer

    def _speculate(self, job: Job, decoding: list[Job]) -> bool:
        """One verification pass instead of a decode step; False when this step should decode plainly."""
        spec = job.stream.request.speculative
        seq = job.seqs[0]
        if seq.reason is not None or seq.pending is None:
            return False
        # auto: in a batch the decode pass already serves this sequence for little extra, and a separate
        # verification pass would cost a whole step. Alone, it pays only while proposals are kept.
        if spec.method == "auto" and (len(decoding) > 1 or seq.speculation_pause > 0):
            seq.speculation_pause = max(0, seq.speculation_pause - 1)
            job.speculation.skipped_steps += 1
            return False
        room = job.max_new - len(seq.generated)
        k = min(spec.num_tokens, room - 1)
        if k < 1:
            return False
        context = job.prompt + seq.generated
        started = time.perf_counter()
        probs: list[torch.Tensor] | None = None
        if spec.method == "draft":
            proposals, probs = self._draft(spec.draft_model).propose(
                id(seq), context, k, job.stream.request.sampling, seq
            )
        else:
            # auto proposes only from a match of two tokens or more: a lone repeated token predicts
            # the next one too rarely to pay for the verification pass
            proposals = prompt_lookup(context, k, spec.ngram, min_ngram=2 if spec.method == "auto" else 1)
        proposed_at = time.perf_counter()
        if not proposals:
            job.speculation.propose_seconds += proposed_at - started
            self._paused(seq, spec.method, None)
            return False
        config = job.stream.request.sampling
        logits = self.runner.extend(seq.row, seq.length, [seq.pending, *proposals], keep=len(proposals) + 1)
        finals: list[torch.Tensor] = []

        def target(i: int, kept: list[int]) -> torch.Tensor:
            final = warp(logits[i], config, context + kept)
            finals.append(final)
            return torch.softmax(final, dim=-1)

        result = verify(proposals, probs, target, config.greedy, seq.generator)
        verified_at = time.perf_counter()
        stats = job.speculation
        stats.proposed += len(proposals)
        stats.accepted += result.accepted
        stats.verify_passes += 1
        stats.propose_seconds += proposed_at - started
        stats.verify_seconds += verified_at - proposed_at
        for name, value in (("proposed", len(proposals)), ("accepted", result.accepted)):
            self.totals[f"speculative_{name}"] += value
        seq.length += 1 + result.accepted  # the pending token and the kept proposals are now in the cache
        for i, token in enumerate(result.tokens):
            self._take(job, seq, token, logits[i], finals[i], 1, speculative=i < result.accepted)
            if seq.reason is not None:
                break
        if spec.method == "auto" and self.plain_step_s:
            gain = (result.accepted + 1) * self.plain_step_s / (verified_at - started)
            self._paused(seq, spec.method, gain)
        return True

    def _paused(self, seq: Sequence, method: str, gain: float | None) -> None:
        """auto: after a verification that did not pay (or found nothing to propose), decode plainly for
        a while, each time twice as long, before trying again."""
        if method != "auto":
            return
        if gain is None or gain < 1.0:
            seq.speculation_pause = seq.speculation_backoff
            seq.speculation_backoff = min(seq.speculation_backoff * 2, 256)
        else:
            seq.speculation_backoff = 8

    # --- beam search ---
    def _beam_step(self, job: Job, logits: torch.Tensor, batch: int) -> None:
        """Advance a beam search by one token: logits (beams, V) of its rows in `job.seqs` order."""
        beam = job.beam
        assert beam is not None
        penalty = job.stream.request.sampling.repetition_penalty
        # as transformers does it: the penalty works on log-probabilities, each beam's own history
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        if penalty != 1.0:
            logprobs = torch.stack(
                [
                    apply_repetition_penalty(row, job.prompt + tokens, penalty)
                    for row, tokens in zip(logprobs, beam.tokens, strict=True)
                ]
            )
        parents = beam.advance(logprobs)
        job.beam_batches.append(batch)
        if beam.done:
            self._beam_answer(job)
            return
        rows = [seq.row for seq in job.seqs]
        if parents != list(range(len(rows))):
            self.cache.gather_rows(rows, [rows[p] for p in parents], job.seqs[0].length)
        for seq, tokens in zip(job.seqs, beam.tokens, strict=True):
            seq.pending = tokens[-1]

    def _beam_answer(self, job: Job) -> None:
        """The search is over: keep one row, put the best hypothesis in it and stream it as tokens with
        their probabilities (one pass over the answer gives each token's logits)."""
        beam = job.beam
        assert beam is not None
        assert job.beam_first_logits is not None
        best = beam.best()
        tokens = best.tokens[:-1] if best.ended_by_stop else best.tokens
        lead, *others = job.seqs
        for seq in others:
            self._release(seq)
        job.seqs = [lead]
        end = self.runner.virtual_tokens + len(job.prompt)
        lead.length = end
        logits = [job.beam_first_logits]
        if len(tokens) > 1:
            logits.extend(self.runner.extend(lead.row, end, tokens[:-1], keep=len(tokens) - 1))
            lead.length = end + len(tokens) - 1
        for k, token in enumerate(tokens):
            batch = job.beam_batches[k] if k < len(job.beam_batches) else 1
            self._take(job, lead, token, logits[k], logits[k], batch, speculative=False)
            if lead.reason is not None:
                break
        if lead.reason is None:
            lead.reason = FinishReason.STOP if best.ended_by_stop else FinishReason.LENGTH
            lead.detokenizer.flush()
        lead.pending = None

    # --- the end of a job ---
    def finish(self, job: Job, reason: FinishReason | None, error: str | None = None) -> None:
        """Push the stats and the one Done event, and free the job's rows. reason None: the (chosen)
        sequence's own."""
        stream = job.stream
        candidates: list[Candidate] = []
        chosen = job.seqs[0] if job.seqs else None
        if len(job.seqs) > 1 and reason is None:
            # best_of: streamed after choosing, so the consumer sees one answer, not N interleaved ones.
            chosen, candidates = ranked(job.seqs)
            for event in chosen.events:
                if not self._deliver(job, event):
                    reason = FinishReason.CANCELLED
                    break
        if stream.cancelled:
            reason = FinishReason.CANCELLED
        if reason is None:
            reason = chosen.reason if chosen and chosen.reason else FinishReason.LENGTH
        if chosen is not None and reason not in (FinishReason.CANCELLED, FinishReason.ERROR):
            tokens = (job.prompt + chosen.generated)[: chosen.length - self.runner.virtual_tokens]
            if chosen.row >= 0 and len(job.seqs) == 1:  # keep the answer's blocks for the next turn
                self.prefix.insert(tokens, self.cache, chosen.row, self.runner.virtual_tokens)
        # The answer is what the chosen sequence produced; a cancelled or failed stream's answer is
        # what its consumer was shown. `tail` is the held-back end no token event carried.
        finished = reason not in (FinishReason.CANCELLED, FinishReason.ERROR) and chosen is not None
        text = chosen.text if finished and chosen is not None else job.shown
        tail = text[len(job.shown) :] if text.startswith(job.shown) else ""
        stream.push(stats_event(job, chosen, self.runner, self.context_length, self.plain_step_s))
        stream.push(DoneEvent(reason=reason, text=text, error=error, tail=tail, candidates=candidates))
        self.totals[f"finished_{reason.value}"] += 1
        for seq in job.seqs:
            if seq.reason is None:
                seq.reason = reason
            self._release(seq)
        if job in self.jobs:
            self.jobs.remove(job)

    def close(self) -> None:
        for job in [*self.jobs, *self.waiting]:
            self.finish(job, FinishReason.CANCELLED)
        self.waiting.clear()

    # --- what the Engine page shows ---
    def metrics(self) -> dict[str, Any]:
        return engine_metrics(self)
