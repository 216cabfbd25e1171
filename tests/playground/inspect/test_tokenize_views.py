"""The tokenizer lab's pages, partials, training and JSON API, on the tiny model."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from playground.inspect.models import TrainedTokenizer
from playground.inspect.tasks import train_tokenizer_task

pytestmark = pytest.mark.django_db

LAB = reverse("inspect:tokenize")
API = reverse("inspect:tokenize-api")
TRAIN = reverse("inspect:tokenize-train")
HTMX = {"HTTP_HX_REQUEST": "true"}
CORPUS = "The quick brown fox jumps over the lazy dog. Tokenizers split text into pieces.\n" * 40


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path: Path) -> Path:
    """Trained tokenizers go to this test's own data folder."""
    settings.DATA_DIR = tmp_path / "data"
    return settings.DATA_DIR


@pytest.fixture
def stranger(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_user(username="mallory", password="x" * 20))
    return client


def counts(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-count="([\w-]+)">([^<]*)<', html))


def chip_texts(html: str) -> list[str]:
    """The visible text of each token chip of the first column."""
    chips = html.split('<div class="chips">', 1)[1].split("</div>", 1)[0]
    return [
        re.sub(r"<[^>]+>", "", m)
        for m in re.findall(r'<span class="txt">(.*?)</span><span class="tid">', chips)
    ]


def post_api(client: Client, body: object) -> tuple[int, dict]:
    data = body if isinstance(body, str) else json.dumps(body)
    response = client.post(API, data, content_type="application/json")
    return response.status_code, response.json()


def train(client: Client, **fields: object):
    data = {"kind": "bpe", "vocab_size": 300, "unicode_form": "", "text": CORPUS, **fields}
    return client.post(TRAIN, data, **HTMX)


# --- the lab --------------------------------------------------------------------------------------
def test_the_lab_shows_the_example_as_chips_with_counts_and_every_step(client_in: Client, tiny_model) -> None:
    response = client_in.get(LAB)
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-tokenizer="model:tiny-llama"' in html
    numbers = counts(html)
    assert int(numbers["tokens"]) > 10
    assert numbers["characters"] == "93"
    assert "round trip: exact" in html
    for step in ["Normalization", "Pre-tokenization", "Tokens", "IDs", "Embeddings", "Positions"]:
        assert f"<h3>{step}</h3>" in html
    assert "none: this tokenizer takes the text exactly as typed" in html
    assert "<polyline points=" in html  # embedding sparklines
    assert "θ<sub>i</sub> = 10,000<sup>−2i/16</sup>" in html  # the tiny Llama's RoPE, 16 dims a head
    assert 'src="/static/inspect/tokenize.js"' in html


def test_a_script_tag_in_the_text_is_shown_as_text(client_in: Client, tiny_model) -> None:
    html = client_in.post(
        LAB, {"text": "<script>alert(1)</script>", "models": ["model:tiny-llama"]}
    ).content.decode()
    assert "<script>alert" not in html
    assert "&lt;" in "".join(chip_texts(html))
    assert "".join(chip_texts(html)).replace("&lt;", "<").replace("&gt;", ">") == "<script>alert(1)</script>"


def test_typing_with_htmx_gets_only_the_results(client_in: Client, tiny_model) -> None:
    response = client_in.post(LAB, {"text": "a  b\tc\r\nd", "models": ["model:tiny-llama"]}, **HTMX)
    html = response.content.decode()
    assert "<html" not in html
    assert "<form" not in html
    assert "".join(chip_texts(html)) == "a··b→c↵d"  # the browser's \r\n is the \n that was typed
    assert counts(html)["characters"] == "8"


def test_the_form_works_without_javascript(client_in: Client, tiny_model) -> None:
    html = client_in.post(LAB, {"text": "hello there", "models": ["model:tiny-llama"]}).content.decode()
    assert "<html" in html
    assert "hello there</textarea>" in html
    assert counts(html)["characters"] == "11"


def test_a_link_can_pick_the_text_and_tokenizers(client_in: Client, tiny_model) -> None:
    html = client_in.get(LAB, {"text": "linked text", "models": "model:tiny-llama"}).content.decode()
    assert counts(html)["characters"] == "11"
    assert 'value="model:tiny-llama" checked' in html


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"text": ""}, "Type or paste some text to see its tokens."),
        ({"text": "x" * 20_001}, "The text is longer than 20,000 characters"),
        ({"text": "hi", "models": ["model:nope"]}, "Unknown tokenizer model:nope"),
        (
            {"text": "hi", "models": ["model:tiny-llama"] * 1 + [f"trained:{i}" for i in range(5)]},
            "Unknown tokenizer",
        ),
    ],
)
def test_bad_lab_input_gets_a_message_in_place(
    client_in: Client, tiny_model, data: dict, message: str
) -> None:
    response = client_in.post(LAB, data, **HTMX)
    assert response.status_code == 200
    assert '<p class="message error" role="alert">' in response.content.decode()
    assert message in response.content.decode()


def test_an_empty_store_says_what_to_do(client_in: Client, model_dir) -> None:
    html = client_in.get(LAB).content.decode()
    assert "There is no tokenizer yet: pull a model or train a tokenizer." in html
    assert "There is no model to render with yet: pull one first." in html
    assert "python manage.py models pull-default" in html


def test_strangers_are_sent_to_log_in(client: Client, tiny_model) -> None:
    for url in [LAB, API]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


# --- the chat template ----------------------------------------------------------------------------
def test_the_conversation_shows_special_tokens_highlighted(client_in: Client, tiny_model) -> None:
    data = {
        "model": "tiny-llama",
        "system": "Be <b>brief</b>.",
        "user": "Hi",
        "assistant": "",
        "generation_prompt": "on",
    }
    html = client_in.post(reverse("inspect:tokenize-chat"), data, **HTMX).content.decode()
    assert html.count('<mark class="special">&lt;|im_start|&gt;</mark>') == 3
    assert html.count('<mark class="special">&lt;|im_end|&gt;</mark>') == 2
    assert "Be &lt;b&gt;brief&lt;/b&gt;." in html
    assert counts(html)["chat-special"] == "5"


def test_a_model_without_a_chat_template_says_so(
    client_in: Client, store, tiny_model, tiny_model_dir, tmp_path
) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, plain)
    (plain / "chat_template.jinja").unlink()
    store.import_folder(plain, "tiny-plain")
    data = {"model": "tiny-plain", "user": "Hi"}
    html = client_in.post(reverse("inspect:tokenize-chat"), data, **HTMX).content.decode()
    assert "This tokenizer has no chat template" in html


def test_the_page_renders_the_example_conversation(client_in: Client, tiny_model) -> None:
    html = client_in.get(LAB).content.decode()
    assert "What is a token?" in html
    assert '<mark class="special">&lt;|im_start|&gt;</mark>system' in html


# --- training -------------------------------------------------------------------------------------
def test_training_inline_makes_a_tokenizer_i_can_pick_in_the_lab(
    client_in: Client, tiny_model, data_dir
) -> None:
    html = train(client_in, name="mine", lowercase="on").content.decode()
    row = TrainedTokenizer.objects.get(name="mine")
    assert row.status == "ready"
    assert row.actual_vocab_size == 300
    assert "Trained “mine”: 300 tokens" in html
    assert row.path.parent == data_dir / "tokenizers"
    assert re.fullmatch(r"[0-9a-f]{32}\.json", row.path.name)
    assert row.path.exists()
    page = client_in.get(LAB).content.decode()
    assert f'value="trained:{row.pk}"' in page
    lab = client_in.post(
        LAB, {"text": "The Quick fox", "models": [f"trained:{row.pk}", "model:tiny-llama"]}, **HTMX
    )
    lab_html = lab.content.decode()
    assert lab_html.count('class="card column"') == 2
    assert '<h2>mine <span class="badge">trained here</span></h2>' in lab_html
    assert "round trip: differs" in lab_html  # it lowercases
    assert "<code>Lowercase</code>" in lab_html
    assert "A trained tokenizer has no model behind it" in lab_html


def test_an_uploaded_utf8_file_trains_and_keeps_its_generated_name(
    client_in: Client, tiny_model, data_dir
) -> None:
    upload = SimpleUploadedFile(
        "../../escape.txt", "\ufeff".encode() + CORPUS.encode(), content_type="text/plain"
    )
    response = train(client_in, text="", file=upload, kind="wordpiece", vocab_size=120)
    assert "Trained" in response.content.decode()
    row = TrainedTokenizer.objects.get()
    assert row.source == "escape.txt"  # Django keeps only the base name of an upload
    assert [p.name for p in (data_dir / "tokenizers").iterdir()] == [f"{row.key.hex}.json"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"text": ""}, "The training text is empty"),
        ({"text": "  \n "}, "The training text is empty"),
        ({"vocab_size": 5}, "The vocabulary size must be between 100 and 50,000."),
        ({"vocab_size": 10**6}, "The vocabulary size must be between 100 and 50,000."),
        ({"kind": "sentencepiece"}, "Unknown kind sentencepiece: pick BPE, Unigram or WordPiece."),
        (
            {"file": SimpleUploadedFile("latin.txt", "café crème".encode("latin-1"))},
            "The file is not UTF-8 text",
        ),
        ({"text": "", "file": SimpleUploadedFile("data.csv", b"a,b\n")}, "Upload a plain-text .txt file."),
        (
            {"kind": "unigram", "vocab_size": 100, "text": "".join(chr(0x4E00 + i) for i in range(300))},
            "smaller than the number of different characters",
        ),
    ],
)
def test_bad_training_input_gets_a_message_in_place(
    client_in: Client, tiny_model, fields: dict, message: str
) -> None:
    if "file" in fields and "text" not in fields:
        fields["text"] = ""
    response = train(client_in, **fields)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not TrainedTokenizer.objects.exists()


def test_uploads_and_pastes_over_the_limits_are_refused(client_in: Client, tiny_model, settings) -> None:
    settings.TOKENIZER_TRAIN_MAX_BYTES = 1000
    settings.TOKENIZER_TRAIN_MAX_PASTE_CHARS = 100
    big = SimpleUploadedFile("big.txt", b"word " * 300)
    assert (
        "The file is 1.5\xa0KB; the limit is 1000\xa0bytes."
        in train(client_in, text="", file=big).content.decode()
    )
    pasted = train(client_in, text="x" * 101).content.decode()
    assert "Pasted text is limited to 100 characters (this has 101): upload a .txt file instead." in pasted
    assert not TrainedTokenizer.objects.exists()


def test_big_texts_are_trained_by_the_worker_task(
    client_in: Client, tiny_model, settings, django_capture_on_commit_callbacks
) -> None:
    settings.TOKENIZER_TRAIN_INLINE_BYTES = 1000
    with django_capture_on_commit_callbacks() as callbacks:
        html = train(client_in, name="big").content.decode()
    row = TrainedTokenizer.objects.get(name="big")
    assert len(callbacks) == 1, "the task is queued once the row is committed"
    assert row.status == "pending"
    assert row.corpus_path.exists()
    assert "is queued" in html
    assert 'hx-trigger="every 2s"' in html  # the list polls while it waits
    assert train_tokenizer_task(row.pk) == "ready"
    row.refresh_from_db()
    assert (row.status, row.actual_vocab_size) == ("ready", 300)
    assert row.path.exists()
    assert not row.corpus_path.exists()
    polled = client_in.get(reverse("inspect:tokenize-trained"), **HTMX).content.decode()
    assert 'hx-trigger="every 2s"' not in polled
    assert 'data-status="ready"' in polled
    assert "Use in the lab" in polled


def test_a_failed_worker_task_shows_why(
    client_in: Client, tiny_model, settings, django_capture_on_commit_callbacks
) -> None:
    settings.TOKENIZER_TRAIN_INLINE_BYTES = 10
    with django_capture_on_commit_callbacks():
        train(
            client_in,
            name="doomed",
            kind="unigram",
            vocab_size=100,
            text="".join(chr(0x4E00 + i) for i in range(300)),
        )
    row = TrainedTokenizer.objects.get(name="doomed")
    assert train_tokenizer_task(row.pk) == "failed"
    polled = client_in.get(reverse("inspect:tokenize-trained"), **HTMX).content.decode()
    assert 'data-status="failed"' in polled
    assert "smaller than the number of different characters" in polled


def test_deleting_a_tokenizer_removes_its_file(client_in: Client, tiny_model) -> None:
    train(client_in, name="gone")
    row = TrainedTokenizer.objects.get()
    client_in.post(reverse("inspect:tokenize-delete", args=[row.pk]), **HTMX)
    assert not TrainedTokenizer.objects.exists()
    assert not row.path.exists()


def test_another_user_can_neither_see_nor_use_my_tokenizer(
    client_in: Client, stranger: Client, tiny_model
) -> None:
    train(client_in, name="alices-secret")
    row = TrainedTokenizer.objects.get()
    assert "alices-secret" not in stranger.get(LAB).content.decode()
    html = stranger.post(LAB, {"text": "hi", "models": [f"trained:{row.pk}"]}, **HTMX).content.decode()
    assert f"Unknown tokenizer trained:{row.pk}" in html
    status, body = post_api(stranger, {"text": "hi", "models": [f"trained:{row.pk}"]})
    assert status == 400
    assert "Unknown tokenizer" in body["error"]
    assert stranger.post(reverse("inspect:tokenize-delete", args=[row.pk]), **HTMX).status_code == 404
    assert "alices-secret" not in stranger.get(reverse("inspect:tokenize-trained"), **HTMX).content.decode()
    assert TrainedTokenizer.objects.filter(pk=row.pk).exists()
    assert row.path.exists()


# --- the JSON API ---------------------------------------------------------------------------------
def test_the_api_answers_tokens_counts_and_round_trip(client_in: Client, tiny_model) -> None:
    status, body = post_api(client_in, {"text": "Hello  world 👋", "models": ["tiny-llama"]})
    assert status == 200
    (result,) = body["results"]
    assert result["tokenizer"] == "model:tiny-llama"
    assert result["counts"]["characters"] == 14
    assert result["counts"]["bytes"] == 17
    assert result["counts"]["tokens"] == len(result["tokens"])
    assert result["round_trip"] == {"exact": True, "decoded": "Hello  world 👋"}
    first = result["tokens"][0]
    assert set(first) == {"index", "id", "text", "display", "start", "end", "special", "byte"}
    assert any(t["byte"] for t in result["tokens"])
    assert "pipeline" not in result
    assert "embeddings" not in result


def test_the_api_includes_the_pipeline_and_embeddings_when_asked(client_in: Client, tiny_model) -> None:
    status, body = post_api(
        client_in,
        {"text": "Hello world", "models": ["model:tiny-llama"], "include": ["pipeline", "embeddings"]},
    )
    assert status == 200
    result = body["results"][0]
    assert result["pipeline"]["pre_tokens"][1] == {"text": "Ġworld", "start": 5, "end": 11}
    assert result["pipeline"]["ids"] == [t["id"] for t in result["tokens"]]
    emb = result["embeddings"]
    assert (emb["hidden_size"], emb["dims"]) == (64, 64)
    assert len(emb["rows"]) == len(result["tokens"])
    assert emb["rope"][0]["base"] == 10000.0
    assert len(emb["rope"][0]["frequencies"]) == 8


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": ""}, "Type or paste some text"),
        ({"models": ["tiny-llama"]}, "Type or paste some text"),
        ({"text": "x" * 20_001}, "longer than 20,000 characters"),
        ({"text": "hi", "models": ["no-such-model"]}, "Unknown tokenizer model:no-such-model"),
        ({"text": "hi", "include": ["attention"]}, "include may list"),
        ("{not json", "The request body is not valid JSON."),
        ("[1, 2]", "The request body must be a JSON object."),
        ({"text": "a\ud800"}, "surrogate"),
    ],
)
def test_the_api_refuses_bad_requests_with_a_json_message(
    client_in: Client, tiny_model, body: object, message: str
) -> None:
    status, answer = post_api(client_in, body)
    assert status == 400
    assert message in answer["error"]


def test_the_api_wants_post(client_in: Client, tiny_model) -> None:
    response = client_in.get(API)
    assert response.status_code == 405
    assert "POST" in response.json()["error"]


def test_the_api_needs_the_csrf_token(django_user_model, tiny_model) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(django_user_model.objects.create_user(username="scripter", password="x" * 20))
    body = json.dumps({"text": "hi"})
    assert client.post(API, body, content_type="application/json").status_code == 403
    client.get(LAB)  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    response = client.post(API, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200
    assert response.json()["results"][0]["counts"]["characters"] == 2
