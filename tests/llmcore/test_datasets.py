"""Datasets: format detection, validation errors with line numbers, limits, samples, and the loss preview."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmcore.datasets import (
    MAX_UPLOAD_BYTES,
    SAMPLE_DATASETS,
    encode_messages,
    load_sample,
    parse_dataset,
    preview,
    to_messages,
)


def jsonl(*rows: object) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize(
    ("data", "filename", "fmt"),
    [
        (jsonl({"text": "a"}, {"text": "b"}), "d.jsonl", "text"),
        (jsonl({"instruction": "Q", "input": "", "output": "A"}), "d.jsonl", "instruction"),
        (
            jsonl({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}),
            "d.jsonl",
            "chat",
        ),
        (jsonl({"prompt": "P", "chosen": "good", "rejected": "bad"}), "d.jsonl", "preference"),
        (json.dumps([{"instruction": "Q", "output": "A"}]).encode(), "d.json", "instruction"),
        (b"prompt,chosen,rejected\nP,good,bad\n", "d.csv", "preference"),
        (b"First paragraph\nstill first.\n\nSecond paragraph.\n", "d.txt", "text"),
    ],
)
def test_it_detects_each_format_from_the_keys(data: bytes, filename: str, fmt: str) -> None:
    parsed = parse_dataset(data, filename, max_rows=100)
    assert parsed.errors == []
    assert parsed.format == fmt
    assert parsed.rows


def test_txt_rows_are_paragraphs() -> None:
    parsed = parse_dataset(b"One\ntwo\n\n\nThree\n", "notes.txt")
    assert [r["text"] for r in parsed.rows] == ["One\ntwo", "Three"]


def test_pasted_text_is_sniffed_without_an_extension() -> None:
    assert parse_dataset(jsonl({"text": "x"}, {"text": "y"}), "pasted").format == "text"
    assert (
        parse_dataset(b'[{"prompt": "p", "chosen": "c", "rejected": "r"}]', "pasted").format == "preference"
    )


def test_jsonl_errors_name_their_lines() -> None:
    data = b"\n".join(
        [
            json.dumps({"instruction": "Q1", "output": "A1"}).encode(),
            b"{not json",
            json.dumps({"instruction": "Q3", "output": ""}).encode(),
            json.dumps({"instruction": "Q4"}).encode(),
            json.dumps({"instruction": "Q5", "output": 5}).encode(),
            json.dumps({"instruction": "Q6", "output": "A6"}).encode(),
        ]
    )
    parsed = parse_dataset(data, "d.jsonl")
    assert parsed.format == "instruction"
    assert [(e.line, e.message.split(" (")[0]) for e in parsed.errors] == [
        (2, "not valid JSON"),
        (3, "'output' is empty."),
        (4, "missing 'output'."),
        (5, "'output' must be text, got int."),
    ]
    assert [r["instruction"] for r in parsed.rows] == ["Q1", "Q6"]
    assert not parsed.ok


def test_chat_rows_are_checked_for_roles_and_ending() -> None:
    ok = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]
    rows = [
        {"messages": ok},
        {"messages": [{"role": "robot", "content": "beep"}, {"role": "assistant", "content": "x"}]},
        {"messages": [{"role": "user", "content": "Hi"}]},
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "system", "content": "late"},
                {"role": "assistant", "content": "x"},
            ]
        },
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}]},
        {"messages": "Hi"},
    ]
    parsed = parse_dataset(json.dumps(rows).encode(), "chat.json")
    assert parsed.format == "chat"
    lines = {e.line: e.message for e in parsed.errors}
    assert sorted(lines) == [2, 3, 4, 5, 6]
    assert "'robot'" in lines[2]
    assert "must end with an assistant" in lines[3]
    assert "system message can only come first" in lines[4]
    assert "no text content" in lines[5]
    assert "non-empty list" in lines[6]
    assert len(parsed.rows) == 1


def test_csv_errors_use_file_lines_and_header_is_line_one() -> None:
    parsed = parse_dataset(b"prompt,chosen,rejected\nP,good,bad\nP2,,bad\n", "pairs.csv")
    assert [(e.line, e.message) for e in parsed.errors] == [(3, "'chosen' is empty.")]


def test_non_utf8_and_empty_and_unknown_files_get_one_clear_error() -> None:
    bad = parse_dataset("instruction,output\nCafé,x\n".encode("latin-1"), "d.csv")
    assert "not UTF-8" in bad.errors[0].message
    assert parse_dataset(b"  \n", "d.jsonl").errors[0].message == "The dataset is empty."
    unknown = parse_dataset(jsonl({"question": "q", "answer": "a"}), "d.jsonl")
    assert unknown.format is None
    assert "Could not tell the format" in unknown.errors[0].message
    assert "array" in parse_dataset(b'{"text": "x"}', "d.json").errors[0].message


def test_row_and_size_limits_are_enforced() -> None:
    parsed = parse_dataset(jsonl(*({"text": f"row {i}"} for i in range(12))), "d.jsonl", max_rows=10)
    assert len(parsed.rows) == 10
    assert parsed.errors[-1].line == 11
    assert "limit is 10" in parsed.errors[-1].message
    huge = parse_dataset(b"x" * (MAX_UPLOAD_BYTES + 1), "d.txt")
    assert "limit" in huge.errors[0].message
    assert huge.rows == []


def test_errors_are_capped_with_a_summary() -> None:
    parsed = parse_dataset(b"\n".join([b'{"text": "ok"}'] + [b'{"text": ""}'] * 80), "d.jsonl")
    assert len(parsed.errors) == 51
    assert parsed.errors[-1].message == "...and 30 more errors."


def test_warnings_for_duplicates_and_identical_pairs() -> None:
    parsed = parse_dataset(jsonl(*[{"prompt": "p", "chosen": "same", "rejected": "same"}] * 2), "d.jsonl")
    assert parsed.errors == []
    assert any("duplicates" in w for w in parsed.warnings)
    assert any("same chosen and rejected" in w for w in parsed.warnings)


def test_sample_datasets_ship_valid() -> None:
    pirate = load_sample("pirate-instructions")
    assert pirate.ok
    assert pirate.format == "instruction"
    assert 40 <= len(pirate.rows) <= 80
    assert all(r["output"].startswith("Ahoy, matey!") for r in pirate.rows)
    prefs = load_sample("helpful-preferences")
    assert prefs.ok
    assert prefs.format == "preference"
    assert len(prefs.rows) >= 30
    assert all(
        path.is_relative_to(Path(__file__).parents[2] / "llmcore" / "data")
        for path in SAMPLE_DATASETS.values()
    )


def test_instruction_input_joins_the_user_turn() -> None:
    row = {"instruction": "Summarize.", "input": "Long text.", "output": "Short."}
    assert to_messages(row, "instruction") == [
        {"role": "user", "content": "Summarize.\n\nLong text."},
        {"role": "assistant", "content": "Short."},
    ]


def test_preview_counts_only_assistant_tokens(tokenizer) -> None:
    parsed = parse_dataset(jsonl({"instruction": "Hello world", "output": "The lazy dog."}), "d.jsonl")
    [example] = preview(tokenizer, parsed, n=3, max_seq_len=200)
    counted = "".join(t for t, counts in example.tokens if counts)
    ignored = "".join(t for t, counts in example.tokens if not counts)
    assert counted.startswith("The lazy dog.<|im_end|>")
    assert "Hello world" in ignored
    assert "The lazy dog" not in ignored
    assert not example.truncated
    assert example.loss_tokens == sum(1 for _, c in example.tokens if c)


def test_preview_masks_every_assistant_turn_of_a_chat(tokenizer) -> None:
    messages = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "The fox."},
        {"role": "user", "content": "More"},
        {"role": "assistant", "content": "The dog."},
    ]
    encoded = encode_messages(tokenizer, messages, max_seq_len=500)
    counted = tokenizer.decode([t for t, c in zip(encoded.input_ids, encoded.labels_mask, strict=True) if c])
    assert "The fox." in counted
    assert "The dog." in counted
    assert "Hello" not in counted
    assert "More" not in counted


def test_preview_shows_truncation_and_raw_text_counts_everything(tokenizer) -> None:
    parsed = parse_dataset(b"The quick brown fox jumps over the lazy dog. " * 10, "d.txt")
    [example] = preview(tokenizer, parsed, max_seq_len=16)
    assert example.truncated
    assert len(example.tokens) == 16
    assert example.total_tokens > 16
    assert all(counts for _, counts in example.tokens)


def test_preview_falls_back_to_a_template_for_base_models(tokenizer) -> None:
    tokenizer = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = None
    parsed = parse_dataset(jsonl({"instruction": "Hello", "output": "The fox."}), "d.jsonl")
    [example] = preview(tokenizer, parsed)
    text = "".join(t for t, _ in example.tokens)
    assert "### User:\nHello" in text
    assert "".join(t for t, c in example.tokens if c).startswith("The fox.")
