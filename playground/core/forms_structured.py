"""The structured-output fields the chat panel and the next-token explorer share: a response format (free
text, any JSON object, a JSON schema) and the schema, checked by the grammar library itself, so what it
cannot enforce is an error beside the schema field before anything runs."""

from __future__ import annotations

from typing import Any

from django import forms

from playground.core.services import RESPONSE_FORMATS, SCHEMA_CHARS, UserError, output_constraint
from playground.core.text import TextField


def output_format_fields() -> dict[str, forms.Field]:
    """The response format and JSON schema fields, for a form class to include."""
    return {
        "response_format": forms.ChoiceField(
            choices=RESPONSE_FORMATS,
            initial="text",
            required=False,
            label="Output",
            help_text="Free text, or JSON the answer must be: every token is drawn among those that keep "
            "it valid (a grammar over the tokens).",
        ),
        "json_schema": TextField(
            what="The JSON schema",
            max_length=SCHEMA_CHARS,
            required=False,
            strip=False,
            label="JSON schema",
            widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        ),
    }


def output_format_form() -> type[forms.Form]:
    """A form class with the two fields, to inherit from (beside core.forms.sampler_form)."""
    return type("OutputFormatForm", (forms.Form,), output_format_fields())


def clean_output_format(form: forms.Form) -> Any:
    """The form's constraint (llmcore.grammar.Constraint; None for free text). A schema that is missing
    or cannot be enforced is an error beside the schema field."""
    data = form.cleaned_data
    kind = data.get("response_format") or "text"
    schema = data.get("json_schema") or ""
    if kind == "json_schema" and not schema.strip():
        form.add_error("json_schema", "Paste a JSON schema, or choose any JSON object.")
        return None
    try:
        return output_constraint(kind, schema)
    except UserError as exc:
        form.add_error("json_schema", str(exc))
        return None
