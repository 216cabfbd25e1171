"""One turn: the prompt rendered and checked against the context, the saved user message and pending
answer, branch actions (edit, regenerate, continue, replay from a token), and saving what the engine
sent back with its provenance."""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from llmcore.encoding import encode_text
from llmcore.engine import (
    Candidate,
    DoneEvent,
    Engine,
    GenerationRequest,
    GenerationStream,
    SpeculativeConfig,
    StatsEvent,
)
from llmcore.sampling import SamplingConfig
from playground.chat.models import Conversation, Message
from playground.chat.services.conversations import (
    DEFAULT_SETTINGS,
    SAMPLER_KEYS,
    ChatError,
    create_conversation,
    get_conversation,
)
from playground.chat.services.engines import engine_for, model_choices, weights_sha256
from playground.chat.services.tree import Tree, engine_messages, history, message_tree
from playground.core.services import output_constraint


# --- one turn -------------------------------------------------------------------------------------
@dataclass
class Turn:
    """A user message saved and an assistant message waiting for the answer."""

    conversation_id: int
    user_message_id: int
    message_id: int
    prompt_tokens: int
    max_new_tokens: int
    context_length: int
    request: GenerationRequest
    engine: Engine
    # Branch actions (see BRANCH_ACTIONS): what was done, to which message, and the forced start of the
    # answer (continue, branch, replay) that the engine received as prompt ids after the conversation.
    action: str = "new"
    source_id: int | None = None
    prefix_text: str = ""
    prefix_tokens: list[list[Any]] = field(default_factory=list)

    def submit(self) -> GenerationStream:
        return self.engine.submit(self.request)


def start_turn(owner, data: dict[str, Any]) -> Turn:
    """Validated send data (forms.SendForm) -> the saved user message and a pending assistant message.

    The prompt is rendered here, through the model's chat template, so its exact token count is known
    (and checked against the context) before anything is generated. data["action"] (default "new") and
    data["message"], data["at"], data["token"] make it a branch action: see plan_branch.
    """
    if data.get("action", "new") != "new":
        if not data.get("conversation"):
            raise ChatError("Say which conversation the message belongs to.")
        if data["action"] == "replay" and not data.get("replayed"):
            data = replay_data(owner, data)
    model_name = data["model"]
    settings = {key: data[key] for key in DEFAULT_SETTINGS}
    engine = engine_for(model_name)
    if not engine.loaded.has_chat_template:
        raise ChatError(f"{model_name} has no chat template, so it cannot chat.")
    with transaction.atomic():
        conversation = open_conversation(owner, data, settings)
        branch = plan_branch(conversation, engine, data)
        prompt_ids = branch.history_ids + branch.prefix_ids
        context = engine.context_length
        max_new = min(settings["max_new_tokens"], context - 1)
        if len(prompt_ids) > context - max_new:
            raise ChatError(
                f"The conversation is {len(prompt_ids)} tokens; with {max_new} new tokens it does not fit "
                f"in {model_name}'s context of {context} tokens. Lower max new tokens or start a new chat."
            )
        conversation.save()
        user_message = branch.user_message or Message.objects.create(
            conversation=conversation,
            role=Message.Role.USER,
            content=data["content"],
            parent_id=branch.user_parent_id,
            provenance=branch.user_provenance,
        )
        seed = settings["seed"] if settings["seed"] is not None else secrets.randbelow(2**31)
        sampling = SamplingConfig(**{key: settings[key] for key in SAMPLER_KEYS})
        request = GenerationRequest(
            prompt_ids=prompt_ids,
            sampling=sampling,
            seed=seed,
            max_new_tokens=max_new,
            stop_sequences=tuple(settings["stop_sequences"]),
            best_of=settings["best_of"],
            num_beams=settings["num_beams"],
            speculative=SpeculativeConfig(
                method=settings["speculative"],
                num_tokens=settings["speculative_tokens"],
                draft_model=settings["draft_model"] if settings["speculative"] == "draft" else "",
            ),
            constraint=output_constraint(settings["response_format"] or "text", settings["json_schema"]),
            answer_start=len(branch.prefix_ids),  # a forced start is the answer's: its grammar takes it
        )
        provenance = {
            **engine.provenance(request, len(prompt_ids)),  # the engine's own record of the answer
            "weights_sha256": weights_sha256(model_name),
            "max_new_tokens_requested": settings["max_new_tokens"],
            "system_prompt": conversation.system_prompt,
            **branch.provenance,
        }
        message = pending_answer(
            conversation,
            user_message,
            provenance,
            content=branch.prefix_text,
            tokens=branch.prefix_tokens,
            prompt_ids=branch.history_ids,  # the answer's tokens (forced prefix first) follow these
        )
    return Turn(
        conversation_id=conversation.pk,
        user_message_id=user_message.pk,
        message_id=message.pk,
        prompt_tokens=len(prompt_ids),
        max_new_tokens=max_new,
        context_length=context,
        request=request,
        engine=engine,
        action=data.get("action", "new"),
        source_id=branch.source_id,
        prefix_text=branch.prefix_text,
        prefix_tokens=branch.prefix_tokens,
    )


def open_conversation(owner: Any, data: dict[str, Any], settings: dict[str, Any]) -> Conversation:
    """The turn's conversation (a new one for a first message) with the turn's model, system prompt and
    settings set, not saved yet: the turn saves it once the answer is planned."""
    if data.get("conversation"):
        conversation = get_conversation(owner, data["conversation"])
    else:
        conversation = create_conversation(owner, data["model"], title=data["content"])
    conversation.model_name = data["model"]
    conversation.system_prompt = data.get("system") or ""
    conversation.sampler_settings = settings
    return conversation


def pending_answer(
    conversation: Conversation, user_message: Message, provenance: dict[str, Any], **fields: Any
) -> Message:
    """The assistant message an answer streams into, made the branch shown from now on."""
    message = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        parent=user_message,
        status=Message.Status.STREAMING,
        provenance=provenance,
        **fields,
    )
    conversation.current = message
    conversation.save(update_fields=["current"])
    return message


def render_prompt(engine: Engine, messages: list[dict[str, str]]) -> list[int]:
    """Exactly what the engine would render from `messages` (chat template, generation prompt)."""
    return engine.loaded.encode_chat(messages)


STATUS_FOR_REASON = {"cancelled": Message.Status.STOPPED, "error": Message.Status.ERROR}


def finish_turn(
    message_id: int,
    text: str,
    reason: str,
    stats: StatsEvent | None = None,
    error: str | None = None,
    tokens: list[list[Any]] | None = None,
    candidates: list[Candidate] | None = None,
) -> Message:
    """Save the answer (whole or partial) with its status, the generation's stats and its tokens."""
    message = Message.objects.select_related("conversation").get(pk=message_id)
    message.content = text
    message.tokens = tokens or []
    message.status = STATUS_FOR_REASON.get(reason, Message.Status.COMPLETE)
    message.error = error or ""
    provenance = dict(message.provenance)
    provenance["stats"] = {
        "stop_reason": reason,
        "prompt_tokens": stats.prompt_tokens if stats else provenance.get("prompt_tokens"),
        "generated_tokens": stats.generated_tokens if stats else None,
        "time_to_first_token_s": stats.time_to_first_token_s if stats else None,
        "tokens_per_s": stats.tokens_per_s if stats else None,
        "clamped": stats.clamped if stats else False,
        # how the engine served it: batching, the prefix cache, waiting for room, speculation
        "cached_prompt_tokens": stats.cached_prompt_tokens if stats else 0,
        "batch_size_max": stats.batch_size_max if stats else None,
        "batch_size_mean": stats.batch_size_mean if stats else None,
        "queued_s": stats.queued_s if stats else None,
        "speculative": stats.speculative if stats else {},
    }
    if candidates and len(candidates) > 1:  # best-of-N: every candidate, the chosen one first
        provenance["candidates"] = candidates_json(candidates)
    if provenance.get("action") == "replay" and message.status == Message.Status.COMPLETE:
        source_id = provenance.get("source")
        source = Message.objects.filter(pk=source_id).first() if isinstance(source_id, int) else None
        if source is not None:
            provenance["replay"] = replay_report(source, message.tokens, provenance)
    message.provenance = provenance
    message.save(update_fields=["content", "status", "error", "provenance", "tokens"])
    message.conversation.save(update_fields=["updated"])
    return message


def finish_turn_from_done(
    message_id: int, done: DoneEvent, stats: StatsEvent | None, tokens: list[list[Any]] | None = None
) -> Message:
    return finish_turn(message_id, done.text, done.reason, stats, done.error, tokens, done.candidates)


def replay_report(source: Message, tokens: list[list[Any]], provenance: dict[str, Any]) -> dict[str, Any]:
    """Whether a replay repeated its source answer token for token and, where it parted, what the
    engine recorded that differed between the two runs: the same seed draws the same random numbers, so
    only different probabilities make a sampled token differ."""
    before = [int(t[0]) for t in source.tokens]
    after = [int(t[0]) for t in tokens]
    parted = next((i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b), None)
    if parted is None and len(before) != len(after):
        parted = min(len(before), len(after))
    if parted is None:
        return {"matches": True, "parted_at": None, "reasons": []}
    old, new = source.provenance or {}, provenance
    old_stats, new_stats = old.get("stats") or {}, new.get("stats") or {}
    reasons = []
    batch = max(old_stats.get("batch_size_max") or 1, new_stats.get("batch_size_max") or 1)
    if batch > 1:
        reasons.append(
            f"one of the two shared forward passes with other answers (up to {batch} rows): a batched "
            "pass rounds its last bits otherwise than a lone one"
        )
    cached = (old_stats.get("cached_prompt_tokens") or 0, new_stats.get("cached_prompt_tokens") or 0)
    if cached[0] != cached[1] and not (old.get("split_invariant") and new.get("split_invariant")):
        reasons.append(
            f"the prefix cache gave {cached[0]} and then {cached[1]} prompt tokens, and this machine's "
            "kernels compute a prompt split in two passes otherwise than in one"
        )
    if old.get("weights_sha256") != new.get("weights_sha256") or old.get("decode") != new.get("decode"):
        reasons.append("the model's weights or the way the engine multiplies them changed since")
    if not reasons:
        reasons.append("none that the engine records (batching, a split prompt, weights, kernels)")
    return {"matches": False, "parted_at": parted, "reasons": reasons}


def candidates_json(candidates: list[Candidate]) -> list[dict[str, Any]]:
    """Best-of-N candidates as saved and sent: an empty candidate's mean log-prob (-inf) becomes null."""
    return [
        {
            "text": c.text,
            "mean_logprob": c.mean_logprob if math.isfinite(c.mean_logprob) else None,
            "reason": c.reason,
            "seed": c.seed,
        }
        for c in candidates
    ]


# --- branch actions -------------------------------------------------------------------------------
# What a "send" frame may ask for besides a new message (consumers.py documents the frames).
BRANCH_ACTIONS = ("new", "regenerate", "continue", "edit", "branch", "replay")


@dataclass
class BranchPlan:
    """Where a new answer goes in the tree and what the engine is given.

    The engine's prompt is `history_ids + prefix_ids`: a forced start of the answer (continue, branch)
    is just more prompt, so stop sequences, the context limit and max_new_tokens apply as for any turn.
    The saved answer keeps `history_ids` as its prompt_ids and the prefix as its first tokens, so its
    tokens cover its whole text and the token inspector lines up."""

    history_ids: list[int]
    prefix_ids: list[int] = field(default_factory=list)
    prefix_tokens: list[list[Any]] = field(default_factory=list)  # [id, text, prob | None, alternatives]
    prefix_text: str = ""
    user_message: Message | None = None  # the user message answered; None: save data["content"] as one
    user_parent_id: int | None = None  # ...after this message
    user_provenance: dict[str, Any] = field(default_factory=dict)
    source_id: int | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


def plan_branch(conversation: Conversation, engine: Engine, data: dict[str, Any]) -> BranchPlan:
    """Validate a branch action against the conversation's tree and plan its answer.

    new: answer data["content"] after the branch shown. regenerate: another answer to the same user
    message. edit: a sibling of a user message with data["content"], then its answer. continue: extend a
    stopped or length-cut answer. branch: the answer's first data["at"] tokens, then data["token"].
    replay: the exact prompt and forced start of an answer (replay_data brings its settings and seed).
    """
    action = data.get("action", "new")
    if action == "new":
        shown = history(conversation)
        messages = engine_messages(conversation, data["content"], shown)
        return BranchPlan(render_prompt(engine, messages), user_parent_id=shown[-1].pk if shown else None)
    tree = message_tree(conversation)  # after the early return: history() built its own for a new message
    source = acted_on(conversation, data)
    provenance = {"action": action, "source": source.pk}
    if action == "edit":
        parent_id, before = edited_branch(conversation, tree, source)
        history_ids = render_prompt(engine, engine_messages(conversation, data["content"], before))
        return BranchPlan(
            history_ids,
            user_parent_id=parent_id,
            user_provenance={"action": "edit", "source": source.pk},
            source_id=source.pk,
            provenance=provenance,
        )
    user_id = answered_user(tree, source, action)
    user_message = conversation.messages.get(pk=user_id)
    plan = BranchPlan([], user_message=user_message, source_id=source.pk, provenance=provenance)
    if action == "replay":
        if not source.prompt_ids:
            raise ChatError(f"Message {source.pk} has no saved prompt, so it cannot be replayed.")
        forced = int(source.provenance.get("forced_tokens") or 0)
        plan.history_ids = list(source.prompt_ids)
        plan.prefix_tokens = [list(t) for t in source.tokens[:forced]]
        plan.prefix_ids = [int(t[0]) for t in plan.prefix_tokens]
        plan.prefix_text = source.content[: int(source.provenance.get("forced_chars") or 0)]
    else:
        messages = engine_messages(conversation, None, branch_to(conversation, tree, user_id))
        plan.history_ids = render_prompt(engine, messages)
        if action == "continue":
            stop_reason = ((source.provenance or {}).get("stats") or {}).get("stop_reason")
            if source.status != Message.Status.STOPPED and stop_reason != "length":
                raise ChatError("Only an answer that was stopped or cut by max new tokens can be continued.")
            plan.prefix_ids, plan.prefix_tokens = answer_tokens(engine, source)
            plan.prefix_text = source.content
        elif action == "branch":
            plan.prefix_ids, plan.prefix_tokens, plan.prefix_text = branch_prefix(engine, source, data)
            plan.history_ids = list(source.prompt_ids) or plan.history_ids  # the prompt its tokens followed
    plan.provenance |= {"forced_tokens": len(plan.prefix_ids), "forced_chars": len(plan.prefix_text)}
    return plan


def acted_on(conversation: Conversation, data: dict[str, Any]) -> Message:
    """The message a branch action names, in this conversation; ChatError as if missing otherwise."""
    message_id = data.get("message")
    source = conversation.messages.filter(pk=message_id).first() if isinstance(message_id, int) else None
    if source is None:  # someone else's message reads exactly like a missing one
        raise ChatError(f"No message {data.get('message')} in this conversation.")
    return source


def edited_branch(
    conversation: Conversation, tree: Tree, source: Message
) -> tuple[int | None, list[Message]]:
    """Where an edit of user message `source` goes: its parent, and the messages down to that parent."""
    if source.role != Message.Role.USER:
        raise ChatError(f"Message {source.pk} is an answer: only your own messages can be edited.")
    parent_id = tree.parent[source.pk]
    return parent_id, branch_to(conversation, tree, parent_id)


def answered_user(tree: Tree, source: Message, action: str) -> int:
    """The user message a new answer for `action` on `source` answers (regenerate, continue, branch,
    replay): source's question, or source itself when regenerating a question left unanswered."""
    if action == "regenerate" and source.role == Message.Role.USER:
        return source.pk  # a question left without an answer (its answer was deleted) can be answered
    if source.role != Message.Role.ASSISTANT:
        raise ChatError(f"Message {source.pk} is yours: {action} works on the model's answers.")
    parent = tree.parent[source.pk]
    if parent is None or tree.role[parent] != Message.Role.USER:
        raise ChatError(f"Message {source.pk} answers no message of yours, so it cannot be redone.")
    return parent


def branch_to(conversation: Conversation, tree: Tree, message_id: int | None) -> list[Message]:
    """The messages from the first down to `message_id` (none when it is None)."""
    if message_id is None:
        return []
    ids = tree.path_to(message_id)
    found = conversation.messages.in_bulk(ids)
    return [found[i] for i in ids]


def answer_tokens(engine: Engine, answer: Message) -> tuple[list[int], list[list[Any]]]:
    """The token ids of an answer's text with their inspector data: the saved tokens when they spell the
    text exactly, else the text tokenized again (probabilities unknown: null)."""
    ids = [int(t[0]) for t in answer.tokens]
    if ids and engine.tokenizer.decode(ids, skip_special_tokens=False) == answer.content:
        return ids, [list(t) for t in answer.tokens]
    ids = encode_text(engine.tokenizer, answer.content, add_special_tokens=False)
    entries: list[list[Any]] = []
    shown = ""
    for i, token_id in enumerate(ids):  # each token's text as the stream would have shown it
        full = engine.tokenizer.decode(ids[: i + 1], skip_special_tokens=False)
        safe = full if i == len(ids) - 1 else full.rstrip("\ufffd")
        text = safe[len(shown) :] if safe.startswith(shown) else ""
        shown += text
        entries.append([token_id, text, None, []])
    return ids, entries


def branch_prefix(
    engine: Engine, answer: Message, data: dict[str, Any]
) -> tuple[list[int], list[list[Any]], str]:
    """The answer's first `at` tokens, then the chosen token (with the probability the answer's
    distribution at that step gave it, when it was among the alternatives shown)."""
    at, token = data.get("at"), data.get("token")
    n = len(answer.tokens)
    if not n:
        raise ChatError(f"Message {answer.pk} has no saved tokens to branch from.")
    if not isinstance(at, int) or not 0 <= at < n:
        raise ChatError(f"Token index {at} is out of range: message {answer.pk} has tokens 0 to {n - 1}.")
    if not isinstance(token, int) or not 0 <= token < engine.vocab_size:
        raise ChatError(f"Token id {token} is not in the model's vocabulary (0 to {engine.vocab_size - 1}).")
    if token in engine.stop_ids:
        raise ChatError(f"Token {token} ends the answer: pick another token to branch from.")
    kept = [list(t) for t in answer.tokens[:at]]
    ids = [int(t[0]) for t in kept] + [token]
    old = answer.tokens[at]
    alternatives = old[3] if len(old) > 3 else []
    prob = old[2] if old[0] == token else next((a[2] for a in alternatives if a[0] == token), None)
    joined = "".join(t[1] for t in kept)
    full = engine.tokenizer.decode(ids, skip_special_tokens=False)
    text = full[len(joined) :] if full.startswith(joined) else engine.tokenizer.decode([token])
    return ids, [*kept, [token, text, prob, alternatives]], joined + text


def replay_data(owner, data: dict[str, Any]) -> dict[str, Any]:
    """Send data for a replay: the answer's own model, system prompt, sampler settings and seed."""
    conversation = get_conversation(owner, data["conversation"])
    source = acted_on(conversation, data)
    if source.role != Message.Role.ASSISTANT or not source.provenance.get("model"):
        raise ChatError(f"Message {source.pk} is not an answer with saved settings: nothing to replay.")
    saved = source.provenance
    if saved["model"] not in dict(model_choices(owner)):
        raise ChatError(
            f"{saved['model']}, which wrote this answer, is no longer in the catalog "
            "(or no longer shared with you), so it cannot be replayed."
        )
    settings = {key: saved["sampling"][key] for key in SAMPLER_KEYS if key in saved.get("sampling", {})}
    settings |= {
        key: saved[key] for key in ("seed", "stop_sequences", "best_of", "num_beams") if key in saved
    }
    settings["max_new_tokens"] = saved.get("max_new_tokens_requested") or saved["max_new_tokens"]
    constraint = saved.get("constraint") or {}  # the JSON the answer had to be, if any
    settings["response_format"] = constraint.get("kind") or "text"
    settings["json_schema"] = (
        json.dumps(constraint["schema"]) if constraint.get("kind") == "json_schema" else ""
    )
    return {
        **data,
        **settings,
        "model": saved["model"],
        "system": saved.get("system_prompt", ""),
        "replayed": True,
    }
