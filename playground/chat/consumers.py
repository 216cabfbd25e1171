"""The chat WebSocket (ws/chat/): validates what the page sends, streams the engine's events back, and
saves every answer - whole, stopped or failed - with its provenance.

asgi.py wraps the route in the origin check of playground/core/origin.py (an origin other than the site's
own scheme, host and port, or a CSRF trusted origin, is refused with 403 before this consumer runs) and
AuthMiddlewareStack. An anonymous socket is accepted, then closed with 4401, so the
page can tell "log in again" apart from a network failure.

Protocol: one JSON object per text frame, each with a "type".

client -> server
    {"type": "send", "conversation": id | null, "model": name, "content": str, "system": str?,
     "settings": {"temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed" (int | null),
                  "max_new_tokens", "stop_sequences": [str], "best_of" (1-8), "num_beams" (1-8),
                  "response_format" ("text" | "json_object" | "json_schema"), "json_schema" (its JSON
                  text: every token is then drawn among those that keep the answer valid JSON)}}
        conversation null starts a new one. Omitted settings (and model, system) fall back to the
        conversation's saved ones, then to services.DEFAULT_SETTINGS. One answer at a time per socket.
        "action" (default "new") makes a new version of a turn, a sibling in the conversation's tree
        that becomes the branch shown; "message" is the id acted upon, in that conversation:
          "regenerate"  another answer to the user message that assistant "message" answers (or to user
                        "message" itself); the frame's settings, a fresh seed unless one is set
          "continue"    assistant "message", stopped or cut by length, extended: its text + more
          "edit"        a sibling of user "message" saying "content", then its answer
          "branch"      assistant "message"'s first "at" tokens, then token id "token", then onwards
          "replay"      assistant "message"'s prompt, forced start, model, settings and seed again: with
                        a deterministic engine, the same text (the frame's settings are not used)
        "content" is only read by "new" and "edit".
    {"type": "stop"}   stop the answer now; it is saved with what was generated, status "stopped"
    {"type": "ping"}

server -> client
    {"type": "started", "conversation": id, "user_message": id, "message": id, "prompt_tokens": n,
     "max_new_tokens": n, "context_length": n, "seed": n, "action": str, "source": id | null,
     "parent": id (the user message the new answer follows), "prefix": str, "prefix_tokens": n}
        continue, branch and replay start the answer with a forced "prefix" (its first "prefix_tokens"
        tokens, saved with the message); their token frames count on from there ("index" = position
        in the whole answer) and "done" carries the whole text: prefix + token texts + tail.
    {"type": "token", "index": i, "id": token_id, "text": str, "prob": p,
     "alternatives": [[id, label, prob], ...]}
        "text" may be "" while bytes of a character or a possible stop sequence are held back. A remote
        model's tokens have id -1 (its server names tokens by text), and prob null and no alternatives
        when the server returns no logprobs; its "started" frame has prompt_tokens 0 (the server's
        count comes in "stats") and context_length null when the server did not say.
    {"type": "loading", "model": name}   before "started", when the model is not in memory yet: the
        first answer of a model waits for it to load (seconds)
    {"type": "prefill", "done": n, "total": n}   a long prompt is being read, a chunk a step (before the
        first token; none for a prompt the engine reads in one step)
    {"type": "queued", "ahead": n, "running": n}   the engine is full (its limits, ENGINE_* settings):
        the answer waits in line behind n others and starts by itself; sent again as the line moves
    {"type": "stats", "prompt_tokens", "generated_tokens", "time_to_first_token_s", "tokens_per_s",
     "seed", "max_new_tokens", "clamped", "context_length", "cached_prompt_tokens" (from the prefix
     cache), "batch_size_max" (most answers decoded in one pass with this one), "queued_s",
     "speculative" ({method, proposed, accepted, acceptance_rate, verify_passes, skipped_steps,
     speedup} or {} when off)}
    {"type": "done", "reason": "stop" | "stop_sequence" | "length" | "cancelled" | "error",
     "message": id, "text": the whole answer, "tail": text no token carried, "error": str | null,
     "candidates": [...]}
        the joined token texts + tail == text. "candidates": with best_of > 1, every candidate
        [{text, mean_logprob, reason, seed}], the chosen (best mean log-prob) first; else [].
    {"type": "error", "error": str, "fields": {name: [str]}?}   bad input; the socket stays usable
    {"type": "pong"}

Limits (settings.CHAT_MAX_*): frame bytes, prompt and system prompt characters, max new tokens; the
rendered prompt plus max new tokens must fit in the model's context. Text is sent and stored raw: the
page must insert it as text (textContent, or autoescaped templates), never as HTML.

Leaving mid-answer: disconnect cancels the stream and waits for the generation task, whose `finally`
saves the partial answer as "stopped", so nothing is lost however the socket ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from playground.chat import services
from playground.chat.forms import send_form
from playground.core.consumers import CLOSE_UNAUTHENTICATED
from playground.core.text import JsonTooDeep, loads_json

logger = logging.getLogger(__name__)
DISCONNECT_SAVE_TIMEOUT_S = 10.0
MAX_ID = 2**63 - 1  # the largest id a database row can have: a larger number names nothing
MAX_TOKEN = 2**31 - 1  # above any vocabulary size and any answer's length


class ChatConsumer(AsyncWebsocketConsumer):
    # No channel layer: every frame a chat socket gets comes from this process's engine, never from
    # another process. With the default layer each consumer would wait on Redis all its life, and a
    # Redis restart would end every open chat with 1011 and leave an answer streaming on unseen, with
    # no socket to stop it. get_channel_layer() gives None for an alias CHANNEL_LAYERS does not name.
    channel_layer_alias = "no-channel-layer"

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        self.task: asyncio.Task[None] | None = None
        self.stream: Any = None
        self.gone = False
        await self.accept()
        if self.user is None or not self.user.is_authenticated:
            self.gone = True
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def disconnect(self, code: int) -> None:
        self.gone = True
        task = self.task
        if task is None or task.done():
            return
        if self.stream is not None:
            self.stream.cancel()
        try:  # the task saves the partial answer in its finally; give it the time to do so
            await asyncio.wait_for(asyncio.shield(task), DISCONNECT_SAVE_TIMEOUT_S)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # --- frames in ---
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.gone:
            return
        if text_data is None:
            await self.send_error("Send JSON text frames, not binary ones.")
            return
        # surrogatepass: a lone surrogate is measured here and refused, with its position, by the form.
        if len(text_data.encode("utf-8", "surrogatepass")) > settings.CHAT_MAX_FRAME_BYTES:
            await self.send_error(f"The message is too large (over {settings.CHAT_MAX_FRAME_BYTES} bytes).")
            return
        try:
            frame = loads_json(text_data)
        except ValueError as exc:  # JsonTooDeep says how deep is too deep; anything else is not JSON
            await self.send_error(
                str(exc) if isinstance(exc, JsonTooDeep) else "The frame is not valid JSON."
            )
            return
        if not isinstance(frame, dict):
            await self.send_error('Send a JSON object with a "type".')
            return
        kind = frame.get("type")
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "stop":
            if self.stream is not None:
                self.stream.cancel()
        elif kind == "send":
            await self.start(frame)
        else:
            await self.send_error('Unknown message type: use "send", "stop" or "ping".')

    async def start(self, frame: dict[str, Any]) -> None:
        if self.task is not None and not self.task.done():
            await self.send_error("An answer is still streaming: stop it or wait for it first.")
            return
        branch, error = branch_fields(frame)
        if not error:
            form, error = await database_sync_to_async(self.validate)(frame)
        if error:
            await self.send_error(error)
            return
        if form.errors:
            fields = {name: [str(e) for e in errors] for name, errors in form.errors.items()}
            await self.send_json(
                {"type": "error", "error": " ".join(sum(fields.values(), [])), "fields": fields}
            )
            return
        try:
            data = {**form.cleaned_data, **branch}
            if data.get("action") == "replay":  # the answer's own model and settings, before loading
                data = await database_sync_to_async(services.replay_data)(self.user, data)
            turn: services.Turn | services.RemoteTurn
            if await database_sync_to_async(services.is_remote_model)(data["model"]):
                turn = await database_sync_to_async(services.start_remote_turn)(self.user, data)
            else:
                # Loading a model can take seconds: say so, and not on the thread the ORM calls share.
                if not services.engine_ready(data["model"]):
                    await self.send_json({"type": "loading", "model": data["model"]})
                await sync_to_async(services.engine_for, thread_sensitive=False)(data["model"])
                turn = await database_sync_to_async(services.start_turn)(self.user, data)
        except services.ChatError as exc:
            await self.send_error(str(exc))
            return
        except Exception as exc:
            logger.exception("chat: could not start an answer")
            await self.send_error(f"Could not start the answer: {type(exc).__name__}: {exc}"[:500])
            return
        self.stream = turn.submit()
        await self.send_json(
            {
                "type": "started",
                "conversation": turn.conversation_id,
                "user_message": turn.user_message_id,
                "message": turn.message_id,
                "prompt_tokens": turn.prompt_tokens,
                "max_new_tokens": turn.max_new_tokens,
                "context_length": turn.context_length,
                "seed": turn.request.seed,
                "action": turn.action,
                "source": turn.source_id,
                "parent": turn.user_message_id,
                "prefix": turn.prefix_text,
                "prefix_tokens": len(turn.prefix_tokens),
            }
        )
        self.task = asyncio.create_task(self.relay(turn, self.stream))

    def validate(self, frame: dict[str, Any]) -> tuple[Any, str | None]:
        """The bound form; a conversation's saved settings fill what the frame leaves out."""
        saved = None
        conversation_id = frame.get("conversation")
        if conversation_id is not None:
            if not whole_number(conversation_id, 1, MAX_ID):
                return None, "conversation must be an id or null."
            try:
                conversation = services.get_conversation(self.user, conversation_id)
            except services.ChatError as exc:
                return None, str(exc)
            saved = {
                "model": conversation.model_name,
                "system": conversation.system_prompt,
                **conversation.sampler_settings,
            }
        form = send_form(frame, saved, self.user)
        form.is_valid()  # here: the model choices read the catalog (the ORM), which async code may not
        if frame.get("action", "new") not in ("new", "edit"):
            form.errors.pop("content", None)  # these actions answer a saved message: no new text
        return form, None

    # --- events out ---
    async def relay(self, turn: services.Turn | services.RemoteTurn, stream: Any) -> None:
        """Forward the stream's events; save the answer however this ends (done, stop, disconnect)."""
        shown: list[str] = [turn.prefix_text]
        # [id, text, prob, alternatives]: the token inspector's data, a forced prefix's tokens first
        tokens: list[list[Any]] = [list(t) for t in turn.prefix_tokens]
        offset = len(turn.prefix_tokens)
        stats = None
        saved = False
        try:
            async for event in stream:
                kind = type(event).__name__
                if kind == "TokenEvent":
                    shown.append(event.text)
                    alternatives = [list(a) for a in event.alternatives]
                    # a remote server without logprobs gives no probability (NaN): null, not invalid JSON
                    prob = event.prob if math.isfinite(event.prob) else None
                    tokens.append([event.id, event.text, prob, alternatives])
                    await self.send_json(
                        {
                            "type": "token",
                            "index": offset + event.index,
                            "id": event.id,
                            "text": event.text,
                            "prob": prob,
                            "alternatives": alternatives,
                        }
                    )
                elif kind == "PrefillEvent":  # a long prompt, read a chunk a step
                    await self.send_json({"type": "prefill", "done": event.done, "total": event.total})
                elif kind == "QueuedEvent":  # the engine is full: the answer waits in line
                    await self.send_json({"type": "queued", "ahead": event.ahead, "running": event.running})
                elif kind == "StatsEvent":
                    stats = event
                    await self.send_json(
                        {
                            "type": "stats",
                            "cached_prompt_tokens": event.cached_prompt_tokens,
                            "batch_size_max": event.batch_size_max,
                            "queued_s": event.queued_s,
                            "speculative": event.speculative,
                            "prompt_tokens": event.prompt_tokens,
                            "generated_tokens": event.generated_tokens,
                            "time_to_first_token_s": event.time_to_first_token_s,
                            "tokens_per_s": event.tokens_per_s,
                            "seed": event.seed,
                            "max_new_tokens": event.max_new_tokens,
                            "clamped": event.clamped,
                            "context_length": event.context_length,
                        }
                    )
                else:  # DoneEvent, always last
                    if turn.prefix_text:
                        event = dataclasses.replace(event, text=turn.prefix_text + event.text)
                    await database_sync_to_async(services.finish_turn_from_done)(
                        turn.message_id, event, stats, tokens
                    )
                    saved = True
                    await self.send_json(
                        {
                            "type": "done",
                            "reason": event.reason,
                            "message": turn.message_id,
                            "text": event.text,
                            "tail": event.tail,
                            "error": event.error,
                            "candidates": services.candidates_json(event.candidates),
                        }
                    )
        finally:
            if not saved:  # torn down before the Done event: keep what the user was shown
                stream.cancel()
                await database_sync_to_async(services.finish_turn)(
                    turn.message_id, "".join(shown), "cancelled", tokens=tokens
                )
            self.stream = None

    async def send_json(self, content: dict[str, Any]) -> None:
        if self.gone:
            return  # the socket is closed; the answer is still saved
        await self.send(text_data=json.dumps(content))

    async def send_error(self, error: str) -> None:
        await self.send_json({"type": "error", "error": error})


def branch_fields(frame: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A frame's branch action and the ids it names, checked for type (services checks the rest)."""
    action = frame.get("action", "new")
    if action not in services.BRANCH_ACTIONS:
        return {}, "Unknown action: use " + ", ".join(f'"{a}"' for a in services.BRANCH_ACTIONS) + "."
    if action == "new":
        return {"action": action}, None
    names = ("message", "at", "token") if action == "branch" else ("message",)
    for name in names:
        low, high = (1, MAX_ID) if name == "message" else (0, MAX_TOKEN)
        if not whole_number(frame.get(name), low, high):
            return {}, f'"{action}" needs "{name}": a whole number from {low} to {high}.'
    if not whole_number(frame.get("conversation"), 1, MAX_ID):
        return {}, f'"{action}" needs the "conversation" the message belongs to.'
    return {"action": action, **{name: frame[name] for name in names}}, None


def whole_number(value: Any, low: int, high: int) -> bool:
    """An int from the frame's JSON (true and false are ints in Python, not here) within [low, high]."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
