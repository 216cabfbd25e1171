"""The import form of Models > Add a model (admins): an upload (one .gguf, or a model folder's files) or a
path on the server. What is refused is refused by the jobs' adding services, with the store's checks."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Every file of a multiple (or folder) file input, as a list; [] when none was chosen."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(**kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        single = super().clean
        items = data if isinstance(data, list | tuple) else [data] if data else []
        return [single(item, initial) for item in items]


class ImportForm(forms.Form):
    gguf = forms.FileField(
        required=False,
        label="A .gguf file",
        widget=forms.ClearableFileInput(attrs={"accept": ".gguf"}),
        help_text="Dequantized once into safetensors (a few minutes for a few hundred MB).",
    )
    folder = MultipleFileField(
        required=False,
        label="Or a model folder",
        widget=MultipleFileInput(attrs={"webkitdirectory": True, "directory": True}),
        help_text="A Hugging Face folder with safetensors weights, config.json and tokenizer files; "
        "its subfolders are not imported.",
    )
    path = forms.CharField(
        required=False,
        max_length=4096,
        label="Or a path on the server",
        help_text="The absolute path of a .gguf file or a model folder that the workers can read.",
        widget=forms.TextInput(attrs={"placeholder": "/data/incoming/my-model"}),
    )
    name = forms.CharField(
        required=False,
        max_length=200,  # the store's rule (at most 64 characters) is checked with its own message
        label="Name in the catalog",
        help_text="Lowercase letters, digits, '.', '_' or '-'; from the file or folder name when empty.",
    )

    # The uploaded folder's name, which the browser knows and the files' names do not carry (add.js).
    folder_name = forms.CharField(required=False, max_length=255, widget=forms.HiddenInput)

    def upload(self) -> tuple[str, list[UploadedFile]]:
        """The upload field used and its files (('gguf', [file]), ('folder', files) or ('', []))."""
        data = self.cleaned_data
        if data.get("gguf"):
            return "gguf", [data["gguf"]]
        if data.get("folder"):
            return "folder", list(data["folder"])
        return "", []

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        chosen = [k for k in ("gguf", "folder", "path") if data.get(k)]
        if len(chosen) > 1:
            raise forms.ValidationError("Choose one: a .gguf file, a model folder or a path on the server.")
        return data


class RemoteForm(forms.Form):
    """Models > Add a model > A remote server (admins): what catalog.services.add_remote checks and adds."""

    base_url = forms.CharField(
        max_length=500,
        label="Base URL",
        help_text="The server's OpenAI-compatible API: vLLM, llama.cpp's server, LM Studio and this "
        "playground serve it at /v1, Ollama at /v1 too.",
        widget=forms.TextInput(attrs={"placeholder": "http://gpu-box:8000/v1", "inputmode": "url"}),
    )
    model = forms.CharField(
        max_length=200,
        label="The server's model id",
        help_text="As its GET /v1/models lists it; checked there before the model is added.",
    )
    api_key = forms.CharField(
        required=False,
        max_length=500,
        label="API key",
        help_text="Kept on this server and sent only to that base URL; never shown again. Empty when the "
        "server needs none.",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )
    name = forms.CharField(
        max_length=200,  # the store's rule (at most 64 characters) is checked with its own message
        label="Name in the catalog",
        help_text="Lowercase letters, digits, '.', '_' or '-'.",
    )
