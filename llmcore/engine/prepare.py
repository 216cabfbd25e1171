"""A request made ready to admit: its prompt (through the chat template), the checks a bad request fails,
the clamp of its answer to the context, its seed, one sequence per best_of candidate or beam, their
grammar states, and the books of a beam search."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from llmcore.engine.beam import BeamSearch
from llmcore.engine.detokenizer import Detokenizer
from llmcore.engine.runner import ModelRunner
from llmcore.engine.sequence import Job, Sequence
from llmcore.grammar import GrammarError, Grammars
from llmcore.sampling import generator_for


def prepare(
    job: Job,
    runner: ModelRunner,
    stop_ids: set[int],
    grammars: Callable[[], Grammars],
    draft: Callable[[str], object],
) -> None:
    """Fill in a waiting job from its request; raises (ending that job's stream) when the request cannot
    run. `grammars`: the engine's compiled grammars; `draft`: loads a draft model, so a request naming one
    that cannot be used fails before admission."""
    loaded = runner.loaded
    request = job.stream.request
    if request.messages is not None:
        if not loaded.has_chat_template:
            raise ValueError(f"{loaded.name} has no chat template; send prompt token ids.")
        job.prompt = loaded.encode_chat(list(request.messages))
    else:
        job.prompt = [int(i) for i in request.prompt_ids or ()]
    if not job.prompt:
        raise ValueError("the prompt is empty")
    bad = [i for i in job.prompt if not 0 <= i < runner.vocab_size]
    if bad:  # checked here: on a GPU an out-of-range id is a device assert that poisons the context
        raise ValueError(f"token id {bad[0]} is outside the vocabulary (size {runner.vocab_size})")
    room = loaded.context_length - len(job.prompt)
    if room < 1:
        raise ValueError(f"the prompt ({len(job.prompt)} tokens) fills the context ({loaded.context_length})")
    job.max_new = min(request.max_new_tokens, room)
    spec = request.speculative
    margin = spec.num_tokens + 1 if spec.on else 0  # a verification writes past the answer's end
    job.positions = runner.virtual_tokens + len(job.prompt) + job.max_new + margin
    job.seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
    job.speculation.method = spec.method
    if spec.method == "draft":
        draft(spec.draft_model)  # fails now, before admission, if the draft cannot be used
    # best_of candidate i samples with seed + i, so each candidate is reproducible on its own.
    job.seqs = [
        Sequence(
            seed=job.seed + i,
            generator=generator_for(job.seed + i),
            detokenizer=Detokenizer(loaded.tokenizer, request.stop_sequences),
        )
        for i in range(max(request.best_of, request.num_beams))
    ]
    if request.constraint is not None:  # compiled once per grammar; a state for each candidate
        compiled = grammars()
        start = job.prompt[len(job.prompt) - request.answer_start :]
        for seq in job.seqs:
            seq.grammar = compiled.state(request.constraint)
            if seq.grammar.advance_all(start) < len(start):
                raise GrammarError("the start of the answer already given does not follow its grammar")
    if request.num_beams > 1:
        generation = getattr(loaded.model, "generation_config", None)  # as generate() reads them
        job.beam = BeamSearch(
            beams=request.num_beams,
            max_new=job.max_new,
            stop_ids=frozenset() if request.ignore_stop_tokens else frozenset(stop_ids),
            length_penalty=float(getattr(generation, "length_penalty", None) or 1.0),
            early_stopping=getattr(generation, "early_stopping", False) or False,
        )
    job.prepared = True
