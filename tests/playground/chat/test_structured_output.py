"""The chat's "Output" option (free text, any JSON object, a JSON schema): checked beside its field,
enforced while the answer streams as usual, saved with the answer and kept by a replay."""

from __future__ import annotations

import json

import jsonschema
import pytest
from django.test import Client
from django.urls import reverse

from playground.chat import services
from playground.chat.models import Conversation, Message
from tests.playground.chat.test_branches_socket import action, talk
from tests.playground.chat.test_consumer import send_frame

pytestmark = pytest.mark.django_db(transaction=True)
COLOUR = {
    "type": "object",
    "properties": {
        "colour": {"enum": ["red", "green", "blue"]},
        "count": {"type": "integer", "minimum": 0, "maximum": 9},
    },
    "required": ["colour", "count"],
    "additionalProperties": False,
}
AS_JSON = {"response_format": "json_schema", "json_schema": json.dumps(COLOUR), "max_new_tokens": 120}


def test_a_json_schema_answer_streams_and_validates(user, tiny_model) -> None:
    ((started, *tokens, stats, done),) = talk(user, send_frame("Pick a colour", **AS_JSON))
    assert started["type"] == "started"
    assert tokens
    assert all(t["type"] == "token" for t in tokens)
    assert "".join(t["text"] for t in tokens) + done["tail"] == done["text"]
    assert done["reason"] == "stop"  # the JSON was complete: the answer ended there
    jsonschema.validate(json.loads(done["text"]), COLOUR)
    answer = Message.objects.get(pk=done["message"])
    assert answer.provenance["constraint"]["schema"] == COLOUR
    conversation = Conversation.objects.get(pk=started["conversation"])
    assert conversation.sampler_settings["response_format"] == "json_schema"


def test_any_json_object_and_a_replay_keep_the_constraint(user, tiny_model) -> None:
    ((*_, done),) = talk(user, send_frame("Pick", response_format="json_object", max_new_tokens=60, seed=3))
    old = Message.objects.get(pk=done["message"])
    assert old.provenance["constraint"]["kind"] == "json_object"
    assert done["text"].startswith("{")
    # the replay's frame says nothing of the output: the answer's own provenance brings the grammar back
    ((*_, again),) = talk(user, action("replay", old.conversation_id, old.pk))
    assert again["text"] == done["text"]
    assert Message.objects.get(pk=again["message"]).provenance["constraint"]["kind"] == "json_object"


@pytest.mark.parametrize(
    ("output", "field", "expected"),
    [
        ({"response_format": "json_schema", "json_schema": ""}, "json_schema", "Paste a JSON schema"),
        ({"response_format": "json_schema", "json_schema": "{"}, "json_schema", "not valid JSON"),
        ({"response_format": "json_schema", "json_schema": '{"type": "strin"}'}, "json_schema", "strin"),
        ({"response_format": "json_object", "num_beams": 2}, "response_format", "set beams to 1"),
        (
            {"response_format": "json_object", "speculative": "prompt_lookup"},
            "response_format",
            "speculative",
        ),
        ({"response_format": "yaml"}, "response_format", "yaml"),
    ],
)
def test_a_bad_output_setting_is_refused_beside_its_field(user, tiny_model, output, field, expected) -> None:
    ((error,),) = talk(user, send_frame("Hi", **output))
    assert error["type"] == "error"
    assert expected in " ".join(error["fields"][field])
    assert not Message.objects.exists()


def test_the_panel_offers_the_output_and_shows_a_saved_schema(user, tiny_model) -> None:
    client = Client()
    client.force_login(user)
    html = client.get(reverse("chat:index")).content.decode()
    assert '<select name="response_format" id="id_response_format">' in html
    assert '<option value="json_schema">JSON schema</option>' in html
    assert 'data-testid="json-schema" hidden' in html  # free text: the schema box waits, hidden
    chat = services.create_conversation(user, "tiny-llama", sampler_settings=AS_JSON)
    html = client.get(reverse("chat:conversation", args=[chat.pk])).content.decode()
    assert '<option value="json_schema" selected>' in html
    assert 'data-testid="json-schema" hidden' not in html
    assert "&quot;colour&quot;" in html  # the saved schema, escaped, in its textarea


def test_continuing_a_cut_json_answer_finishes_the_same_json(user, tiny_model) -> None:
    ((*_, cut),) = talk(user, send_frame("Pick a colour", **{**AS_JSON, "max_new_tokens": 3}))
    assert cut["reason"] == "length"
    old = Message.objects.get(pk=cut["message"])
    frame = action("continue", old.conversation_id, old.pk, settings={"max_new_tokens": 120})
    ((*_, done),) = talk(user, frame)
    assert done["text"].startswith(cut["text"])  # the grammar took the cut start, then went on from it
    jsonschema.validate(json.loads(done["text"]), COLOUR)
