"""Forms of the tokenizer lab: what to tokenize and with which tokenizers, a chat to render, a tokenizer to
train. Every limit is stated in the error a person sees."""

from __future__ import annotations

import codecs
from typing import Any

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.validators import MaxLengthValidator
from django.template.defaultfilters import filesizeformat

from playground.core.text import TextField, check_text
from playground.inspect.forms import ModelNameField, UserModelsForm
from playground.inspect.services import tokenize as services

MAX_COMPARE = 4  # tokenizers side by side


def limits() -> dict[str, int]:
    """The lab's limits, read when used so a deployment (or a test) can change them in settings."""
    return {
        "text_chars": settings.INSPECT_MAX_CHARS,
        "paste_chars": settings.TOKENIZER_TRAIN_MAX_PASTE_CHARS,
        "inline_bytes": settings.TOKENIZER_TRAIN_INLINE_BYTES,
        "upload_bytes": settings.TOKENIZER_TRAIN_MAX_BYTES,
        "vocab_min": services.VOCAB_MIN,
        "vocab_max": services.VOCAB_MAX,
    }


def browser_newlines(text: str) -> str:
    # Browsers send a textarea's newlines as \r\n; the person typed \n, and that is what to tokenize.
    return text.replace("\r\n", "\n")


class TokenizerChoiceField(forms.MultipleChoiceField):
    """Catalog models ("model:<name>") and the person's own trained tokenizers ("trained:<id>").
    A bare model name is read as "model:<name>", which is handy in the JSON API."""

    def __init__(self, *, user: Any = None, **kwargs: Any) -> None:
        super().__init__(choices=lambda: services.tokenizer_choices(user), **kwargs)
        self.error_messages["invalid_choice"] = (
            "Unknown tokenizer %(value)s: pick a catalog model or one of your trained tokenizers."
        )

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, str):
            value = [value]
        values = super().to_python(value)
        return [v if ":" in v else f"model:{v}" for v in values]


class LabForm(forms.Form):
    text = TextField(
        strip=False,  # leading and trailing spaces are tokens too
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}),
        error_messages={"required": "Type or paste some text to see its tokens."},
    )
    # Off by default, as everywhere on the site: typed `<|im_end|>` is text, not the end-of-turn token.
    parse_special = forms.BooleanField(required=False, label="Parse special tokens in my text")

    def __init__(self, *args: Any, user: Any = None, browser: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.browser = browser
        self.user = user
        max_chars = limits()["text_chars"]
        self.fields["text"].validators.append(MaxLengthValidator(max_chars))
        self.fields["text"].error_messages["max_length"] = (
            f"The text is longer than {max_chars:,} characters (it has %(show_value)d): shorten it."
        )
        self.fields["models"] = TokenizerChoiceField(
            user=user,
            required=False,
            widget=forms.CheckboxSelectMultiple,
            label="Tokenizers",
        )

    def clean_text(self) -> str:
        text = self.cleaned_data["text"]
        return browser_newlines(text) if self.browser else text

    def clean_models(self) -> list[str]:
        chosen = list(dict.fromkeys(self.cleaned_data["models"]))  # keep order, drop repeats
        if not chosen:
            default = services.default_choice(self.user)
            if default is None:
                raise forms.ValidationError("There is no tokenizer yet: pull a model or train a tokenizer.")
            chosen = [default]
        if len(chosen) > MAX_COMPARE:
            raise forms.ValidationError(f"Compare at most {MAX_COMPARE} tokenizers at a time.")
        return chosen


class ApiTokenizeForm(LabForm):
    include = forms.MultipleChoiceField(
        choices=[("pipeline", "pipeline"), ("embeddings", "embeddings")],
        required=False,
        error_messages={"invalid_choice": "include may list %(value)s only as 'pipeline' or 'embeddings'."},
    )


CHAT_EXAMPLE = {
    "system": "You are a friendly tutor. Answer in one sentence.",
    "user": "What is a token?",
    "assistant": "A token is a piece of text, often part of a word, that the model reads as one unit.",
}


class ChatForm(UserModelsForm):
    model = ModelNameField(
        label="Model", error_messages={"required": "There is no model to render with yet: pull one first."}
    )
    system = TextField(required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=4000)
    user = TextField(required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=4000)
    assistant = TextField(required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=4000)
    generation_prompt = forms.BooleanField(
        required=False, label="End with the prompt for the assistant's next turn (add_generation_prompt)"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "chat_%s")
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        roles = ("system", "user", "assistant")
        messages = [
            {"role": role, "content": browser_newlines(data[role])} for role in roles if data.get(role)
        ]
        if not messages and not self.errors:
            raise forms.ValidationError("Write at least one message.")
        data["messages"] = messages
        return data


class TrainForm(forms.Form):
    name = TextField(max_length=80, required=False, help_text="Optional; a name is made up if empty.")
    kind = forms.ChoiceField(
        choices=services.TRAIN_KIND_CHOICES,
        initial="bpe",
        widget=forms.RadioSelect,
        error_messages={"invalid_choice": "Unknown kind %(value)s: pick BPE, Unigram or WordPiece."},
    )
    vocab_size = forms.IntegerField(
        min_value=services.VOCAB_MIN, max_value=services.VOCAB_MAX, initial=1000, label="Vocabulary size"
    )
    unicode_form = forms.ChoiceField(
        choices=[("", "none"), *((f, f) for f in services.UNICODE_FORMS)],
        required=False,
        label="Unicode normalization",
    )
    lowercase = forms.BooleanField(required=False)
    strip_accents = forms.BooleanField(required=False, label="Strip accents")
    text = TextField(
        what="The training text",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        label="Training text",
    )
    file = forms.FileField(required=False, label="or a .txt file")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "train_%s")  # the lab's own text box is id_text
        super().__init__(*args, **kwargs)
        limit = limits()
        vocab_range = (
            f"The vocabulary size must be between {services.VOCAB_MIN:,} and {services.VOCAB_MAX:,}."
        )
        self.fields["vocab_size"].error_messages.update(min_value=vocab_range, max_value=vocab_range)
        self.fields["text"].validators.append(MaxLengthValidator(limit["paste_chars"]))
        self.fields["text"].error_messages["max_length"] = (
            f"Pasted text is limited to {limit['paste_chars']:,} characters (this has %(show_value)d): "
            "upload a .txt file instead."
        )

    def clean_file(self) -> str | None:
        upload: UploadedFile | None = self.cleaned_data.get("file")
        return read_text_upload(upload, limits()["upload_bytes"]) if upload else None

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        text, uploaded = data.get("text") or "", data.get("file")
        if "file" in self.errors or "text" in self.errors:
            return data
        if uploaded is not None and text.strip():
            raise forms.ValidationError("Paste text or upload a file, not both.")
        corpus = uploaded if uploaded is not None else browser_newlines(text)
        if not corpus.strip():
            raise forms.ValidationError("The training text is empty: paste some text or upload a .txt file.")
        data["corpus"] = check_text(corpus, "The training text")
        name = str(getattr(self.files.get("file"), "name", "") or "")  # the upload's own name, not its text
        data["source"] = name[:255] if uploaded is not None else "pasted text"
        return data


def read_text_upload(upload: UploadedFile, max_bytes: int) -> str:
    """The upload as text, if it is a UTF-8 .txt file within the size limit."""
    if not (upload.name or "").lower().endswith(".txt"):
        raise forms.ValidationError("Upload a plain-text .txt file.")
    if upload.size is not None and upload.size > max_bytes:
        raise forms.ValidationError(
            f"The file is {filesizeformat(upload.size)}; the limit is {filesizeformat(max_bytes)}."
        )
    # utf-8-sig drops a byte-order mark; the incremental decoder reads big files chunk by chunk.
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
    parts: list[str] = []
    read = 0
    try:
        for chunk in upload.chunks():
            read += len(chunk)
            if read > max_bytes:
                raise forms.ValidationError(f"The file is over the limit of {filesizeformat(max_bytes)}.")
            parts.append(decoder.decode(chunk))
        parts.append(decoder.decode(b"", final=True))
    except UnicodeDecodeError as exc:
        raise forms.ValidationError(
            f"The file is not UTF-8 text (it has the byte {exc.object[exc.start]:#04x}, which UTF-8 "
            "does not allow there). Save it as UTF-8 and upload it again."
        ) from None
    return "".join(parts)
