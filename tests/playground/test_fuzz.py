"""Property-based fuzzing (hypothesis) of every POST form, every JSON endpoint and the chat socket's frames:
whatever is sent, the answer is never a 5xx and the socket never closes with 1011 (nor crashes the consumer).

Bounded so CI stays fast: a few dozen examples per target, derandomized (the same examples every run, so a
failure reproduces), no example database written. Real values (the tiny model's name, real field names,
ids of rows that exist) are mixed with random ones, so the fuzzing reaches past the first validation.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from playground.chat.models import Conversation, Message, PromptTemplate, SamplerPreset
from playground.core.services import model_cache
from playground.inspect.services import attention as attention_services
from tests.playground.chat.test_consumer import headers_for, open_socket

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# --- values ---------------------------------------------------------------------------------------
# Text a JSON body or a socket frame can carry: any code point, lone surrogates and NUL included.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
# Text a browser form can carry (a form body is UTF-8, so it holds no lone surrogate).
FORM_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 10**400]),
)
MEANINGFUL = st.sampled_from(
    ["tiny-llama", "model:tiny-llama", "trained:1", "bpe", "int8", "lora", "full", "1", "0", "-1", "on",
     "temperature,top_k,top_p,min_p", "", " ", "1e999", "nan", "inf", "99999999999999999999999999"]
)  # fmt: skip
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, ANY_TEXT, MEANINGFUL)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(ANY_TEXT, inner, max_size=4)),
    max_leaves=12,
)
FORM_VALUES = st.one_of(
    FORM_TEXT,
    MEANINGFUL,
    NUMBERS.map(str),
    st.lists(st.one_of(FORM_TEXT, MEANINGFUL), min_size=1, max_size=3),  # a field posted several times
    st.sampled_from(["x" * 20_001, "a\x00b", "\r\n" * 50, "<script>alert(1)</script>"]),
)
# Raw JSON texts that no value above produces.
NASTY_BODIES = st.sampled_from(
    ["[" * 50_000 + "]" * 50_000, '{"text": ' + "[" * 5_000 + "]" * 5_000 + "}", '{"text": "a\\ud800b"}',
     '{"text": "\\udfff", "model": "tiny-llama"}', "", "{", "null", "1e999999", '{"text": 1e999999}',
     '"\\u0000"', '{"text": "x", "models": ["model:tiny-llama"], "include": ["pipeline", "embeddings"]}']
)  # fmt: skip


def with_keys(keys: list[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Some of the real field names with random values, and sometimes a field nobody expects."""
    return st.fixed_dictionaries({}, optional={key: values for key in [*keys, "unexpected"]})


def assert_not_5xx(response: Any, what: str) -> None:
    assert response.status_code < 500, f"{what} answered {response.status_code}"


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch) -> Any:
    monkeypatch.setattr(attention_services, "_cache", None)
    yield
    model_cache().clear()


# --- the JSON endpoints ---------------------------------------------------------------------------
API_KEYS = {
    "/api/tokenize": ["text", "models", "include", "parse_special"],
    "/api/attention": ["text", "model", "as_chat"],
    "/api/next-token": ["text", "model", "as_chat", "temperature", "top_k", "top_p", "min_p",
                        "repetition_penalty", "order", "top_n", "seed", "sample", "response_format",
                        "json_schema", "answer"],
    "/api/logit-lens": ["text", "model", "as_chat"],
}  # fmt: skip


def api_bodies(path: str) -> st.SearchStrategy[str]:
    objects = with_keys(API_KEYS[path], JSON_VALUES).map(json.dumps)
    # A text and a model that are fine, the other keys random but often within bounds: these get past
    # validation, so what runs the model is fuzzed too.
    chosen = (
        {"models": st.just(["tiny-llama"])} if path == "/api/tokenize" else {"model": st.just("tiny-llama")}
    )
    plausible = st.fixed_dictionaries(
        {"text": FORM_TEXT.filter(str.strip), **chosen},
        optional={
            key: st.one_of(SCALARS, st.floats(0, 1), st.integers(0, 50))
            for key in API_KEYS[path]
            if key not in ("text", *chosen)
        },
    ).map(json.dumps)
    return st.one_of(plausible, plausible, objects, JSON_VALUES.map(json.dumps), NASTY_BODIES)


@pytest.mark.django_db
def test_no_json_body_gets_a_5xx_from_the_api(client_in: Client, tiny_model) -> None:
    def fuzz(path: str) -> None:
        @FUZZ
        @given(body=api_bodies(path))
        def check(body: str) -> None:
            response = client_in.post(path, body, content_type="application/json")
            assert_not_5xx(response, f"POST {path} {body[:200]!r}")
            assert response["Content-Type"] == "application/json"

        check()

    for path in API_KEYS:  # one test, so the model is imported and loaded once for all four
        fuzz(path)


@pytest.mark.django_db
def test_no_attention_capture_url_gets_a_5xx(client_in: Client, tiny_model) -> None:
    ids = st.one_of(FORM_TEXT.filter(lambda s: "/" not in s and s.strip()), st.just("0" * 32))

    @FUZZ
    @given(capture=ids, layer=st.integers(0, 10**30), head=st.integers(0, 10**30))
    def check(capture: str, layer: int, head: int) -> None:
        for url in (
            f"/api/attention/{capture}",
            f"/api/attention/{capture}/overview",
            f"/api/attention/{capture}/layer/{layer}/head/{head}",
            f"/api/attention/{capture}/layer/{layer}/mean",
        ):
            assert_not_5xx(client_in.get(url), f"GET {url!r}")

    check()


# --- every POST form of the site ------------------------------------------------------------------
SAMPLER = ["temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed", "max_new_tokens",
           "stop_sequences", "best_of", "num_beams", "response_format", "json_schema"]  # fmt: skip
FINETUNE = ["base_model", "method", "dataset", "output_name", "teacher_model", "student_layers", "steps",
            "epochs", "learning_rate", "lr_scheduler", "warmup_steps", "batch_size", "grad_accum",
            "max_seq_len", "seed", "eval_fraction", "lora_rank", "lora_alpha", "lora_dropout",
            "target_modules", "num_virtual_tokens", "dpo_beta", "distill_temperature", "distill_alpha",
            "checkpoint_every", "sample_every", "sample_prompts"]  # fmt: skip
PROMPT = ["name", "category", "description", "system", "template", "add_example",
          "examples-TOTAL_FORMS", "examples-INITIAL_FORMS", "examples-MIN_NUM_FORMS",
          "examples-MAX_NUM_FORMS",
          "examples-0-input", "examples-0-output", "examples-0-DELETE", "examples-1-input"]  # fmt: skip
# (url with {id} where an id goes, the fields its form reads)
FORMS = [
    ("/tokenize/", ["text", "models", "parse_special"]),
    ("/tokenize/chat/", ["model", "system", "user", "assistant", "generation_prompt"]),
    (
        "/tokenize/train/",
        ["name", "kind", "vocab_size", "unicode_form", "lowercase", "strip_accents", "text"],
    ),
    ("/tokenize/trained/{id}/delete/", []),
    ("/attention/", ["text", "model", "as_chat", "compare"]),
    ("/next-token/", [*API_KEYS["/api/next-token"]]),
    ("/logit-lens/", ["text", "model", "as_chat"]),
    ("/chat/prompts/new/", PROMPT),
    ("/chat/prompts/{id}/edit/", PROMPT),
    ("/chat/prompts/{id}/delete/", []),
    ("/chat/presets/", ["preset_name", *SAMPLER]),
    ("/chat/presets/{id}/delete/", []),
    ("/chat/{id}/rename/", ["title"]),
    ("/chat/{id}/delete/", []),
    ("/chat/message/{id}/show/", []),
    ("/chat/message/{id}/delete/", []),
    ("/jobs/new/quantize/", ["base_model", "method", "group_size", "output_name"]),
    ("/jobs/new/finetune/", FINETUNE),
    ("/jobs/datasets/", ["text", "name"]),
    ("/jobs/datasets/sample/", ["sample"]),
    ("/jobs/{id}/cancel/", []),
    ("/jobs/{id}/resume/", []),
    ("/models/{name}/share/", ["shared"]),
    ("/evaluate/", ["name", "description", "task", "metrics", "labels", "text"]),
    ("/evaluate/suites/{id}/share/", ["shared"]),
    ("/evaluate/suites/{id}/delete/", []),
    ("/evaluate/suites/{id}/run/", ["models", "temperature", "top_p", "max_new_tokens", "seed"]),
    ("/keys/new/", ["name"]),
    ("/keys/{id}/revoke/", []),
]


@pytest.fixture
def rows(user, tiny_model) -> dict[str, int]:
    """Rows of the user's own that the id-taking forms can find (others are random ids)."""
    conversation = Conversation.objects.create(owner=user, title="Hi", model_name="tiny-llama")
    question = Message.objects.create(conversation=conversation, role="user", content="Hello")
    Message.objects.create(conversation=conversation, role="assistant", content="Hi!", parent=question)
    template = PromptTemplate.objects.create(owner=user, name="t", template="Say {x}")
    preset = SamplerPreset.objects.create(owner=user, name="p", values={"temperature": 0.5})
    return {
        "conversation": conversation.pk,
        "message": question.pk,
        "template": template.pk,
        "preset": preset.pk,
    }


def uploads() -> st.SearchStrategy[SimpleUploadedFile]:
    names = st.sampled_from(["d.jsonl", "d.json", "d.csv", "d.txt", "d.exe", "../../d.jsonl", "", "x.txt"])
    contents = st.one_of(
        st.binary(max_size=200),
        FORM_TEXT.map(str.encode),
        NASTY_BODIES.map(str.encode),
        st.just(b'instruction,output\n"open,quote\n'),
    )
    return st.builds(lambda name, data: SimpleUploadedFile(name or "f", data), names, contents)


@pytest.mark.django_db
def test_no_form_post_gets_a_5xx(client_in: Client, rows: dict[str, int]) -> None:
    ids = st.one_of(st.sampled_from(sorted(set(rows.values()))), st.integers(0, 10**30))
    names = st.one_of(st.just("tiny-llama"), FORM_TEXT.filter(lambda s: s.strip() and "/" not in s))

    def fuzz(url: str, keys: list[str]) -> None:
        @FUZZ
        @given(
            data=with_keys(keys, FORM_VALUES),
            pk=ids,
            name=names,
            htmx=st.booleans(),
            upload=st.one_of(st.none(), uploads()),
        )
        def check(data: dict[str, Any], pk: int, name: str, htmx: bool, upload: Any) -> None:
            target = url.format(id=pk, name=name)
            if upload is not None and url in ("/jobs/datasets/", "/tokenize/train/", "/evaluate/"):
                data = {**data, "file": upload}
            headers = {"HX-Request": "true"} if htmx else {}
            response = client_in.post(target, data, headers=headers)
            assert_not_5xx(response, f"POST {target!r} {data!r}")

        check()

    for url, keys in FORMS:  # one test for every form: the fixtures are made once, each form fuzzed alike
        fuzz(url, keys)


# --- the chat socket ------------------------------------------------------------------------------
SEND_KEYS = ["conversation", "model", "content", "system", "settings", "action", "message", "at", "token"]
SETTINGS = with_keys(SAMPLER, st.one_of(JSON_VALUES, NUMBERS))
# Settings within their bounds (mostly), so that answers start and the engine's side is fuzzed too.
PLAUSIBLE_SETTINGS = st.fixed_dictionaries(
    {"max_new_tokens": st.integers(1, 6)},
    optional={
        "temperature": st.floats(0, 5),
        "top_k": st.integers(0, 1000),
        "top_p": st.floats(0.01, 1),
        "min_p": st.floats(0, 0.99),
        "repetition_penalty": st.floats(0.5, 3),
        "seed": st.one_of(st.none(), st.integers(0, 2**31 - 1)),
        "stop_sequences": st.lists(FORM_TEXT.filter(bool), max_size=4),
        "best_of": st.integers(1, 3),
        "num_beams": st.integers(1, 3),
        "response_format": st.sampled_from(["text", "json_object", "json_schema"]),
        "json_schema": st.sampled_from(['{"type": "integer"}', '{"enum": ["a", 1]}', "{", "[]", ""]),
    },
)
PLAUSIBLE_SENDS = st.fixed_dictionaries(
    {
        "type": st.just("send"),
        "model": st.just("tiny-llama"),
        "content": FORM_TEXT.filter(str.strip),
        "settings": PLAUSIBLE_SETTINGS,
    },
    optional={
        "system": FORM_TEXT,
        "action": st.sampled_from(["new", "regenerate", "continue", "edit", "branch", "replay"]),
        "conversation": st.integers(1, 4),
        "message": st.integers(1, 8),
        "at": st.integers(0, 8),
        "token": st.integers(0, 400),
    },
)
FRAMES = st.one_of(
    PLAUSIBLE_SENDS,
    PLAUSIBLE_SENDS,  # twice: half the frames or so should start an answer
    with_keys(SEND_KEYS, JSON_VALUES).map(lambda f: {"type": "send", **f}),
    with_keys(SEND_KEYS, st.one_of(SCALARS, st.just("tiny-llama"))).map(
        lambda f: {"type": "send", "model": "tiny-llama", "content": "Hi", **f}
    ),
    st.fixed_dictionaries(
        {"type": st.just("send"), "model": st.just("tiny-llama"), "content": ANY_TEXT, "settings": SETTINGS}
    ),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["send", "stop", "ping", "", None, 1]),
            "action": st.sampled_from(["new", "regenerate", "continue", "edit", "branch", "replay", "x"]),
            "conversation": st.one_of(st.none(), st.integers(-5, 5)),
            "message": st.integers(-5, 10**20),
            "at": NUMBERS,
            "token": NUMBERS,
        }
    ),
    JSON_VALUES,
).map(json.dumps)
# The test client cannot send an empty text frame (it reads "" as no frame at all).
RAW_FRAMES = st.one_of(FRAMES, NASTY_BODIES, ANY_TEXT).filter(bool)


def pings_in(frame: str) -> int:
    try:
        parsed = json.loads(frame)
    except (ValueError, RecursionError):
        return 0
    return int(isinstance(parsed, dict) and parsed.get("type") == "ping")


async def exchange(communicator: Any, frame: str) -> None:
    """Send one frame and read until the consumer has answered it (our ping's pong comes after); an answer
    that started is stopped and read to its end."""
    await communicator.send_to(text_data=frame)
    await communicator.send_json_to({"type": "ping"})
    pongs, streaming = 1 + pings_in(frame), False
    while pongs or streaming:
        output = await communicator.receive_output(timeout=20)
        assert output["type"] != "websocket.close", f"closed {output} after {frame[:300]!r}"
        kind = json.loads(output["text"]).get("type")
        if kind == "started":
            streaming = True
            await communicator.send_json_to({"type": "stop"})
        elif kind == "done":
            streaming = False
        elif kind == "pong":
            pongs -= 1


@pytest.mark.django_db(transaction=True)
def test_no_socket_frame_closes_the_chat_with_1011(user, tiny_model) -> None:
    headers = headers_for(user)

    @FUZZ
    @given(frames=st.lists(RAW_FRAMES, min_size=1, max_size=4))
    def check(frames: list[str]) -> None:
        async def scenario() -> None:
            communicator = await open_socket(headers)
            try:
                for frame in frames:
                    await exchange(communicator, frame)
            finally:
                await communicator.disconnect()

        asyncio.run(scenario())

    check()
