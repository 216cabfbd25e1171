"""Dataset uploads that used to crash the parser or mislead the user: refused with the line to look at."""

from __future__ import annotations

import csv
import io
import json

import pytest

from llmcore.datasets import parse_dataset
from llmcore.text import MAX_JSON_DEPTH

DEEP = "[" * 50_000 + "]" * 50_000
ROW = '{"instruction": "Say hi.", "output": "Hi!"}'


def errors_of(data: bytes | str, filename: str) -> list[str]:
    raw = data.encode() if isinstance(data, str) else data
    return [str(e) for e in parse_dataset(raw, filename).errors]


def test_a_byte_that_is_not_utf8_is_reported_on_its_line() -> None:
    data = b'{"text": "one"}\n{"text": "two"}\n{"text": "thr\xffee"}\n'
    assert errors_of(data, "d.jsonl") == [
        "line 3: not UTF-8 text (byte 14 of the line, 0xff, cannot be decoded). Save the file as UTF-8."
    ]


def test_the_line_of_a_bad_byte_counts_from_after_a_byte_order_mark() -> None:
    data = b'\xef\xbb\xbf{"text": "one"}\n\xfe{"text": "two"}\n'
    assert errors_of(data, "d.jsonl")[0].startswith("line 2: not UTF-8 text (byte 1 of the line, 0xfe,")


def test_an_unterminated_quote_in_a_csv_is_refused_not_merged_into_one_row() -> None:
    data = 'instruction,output\nSay hi.,Hi!\n"Say bye.,Bye!\nCount.,Three\n'
    parsed = parse_dataset(data.encode(), "d.csv")
    assert [str(e) for e in parsed.errors][0] == (
        'line 3: not valid CSV: a quoted field starting on this line is never closed (a " is missing).'
    )
    assert len(parsed.rows) == 1
    assert not parsed.ok


def test_quoted_csv_fields_over_several_lines_still_read() -> None:
    data = 'instruction,output\n"Say hi,\nnicely.",Hi!\nCount.,"1, 2"\n'
    parsed = parse_dataset(data.encode(), "d.csv")
    assert not parsed.errors
    assert [r["instruction"] for r in parsed.rows] == ["Say hi,\nnicely.", "Count."]


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 50_000])
def test_deeply_nested_json_lines_are_refused_on_their_line(depth: int) -> None:
    deep = "[" * depth + "]" * depth
    errors = errors_of(f"{ROW}\n{deep}\n{ROW}\n", "d.jsonl")
    assert errors[0] == f"line 2: The JSON nests more than {MAX_JSON_DEPTH} levels deep; flatten it."


def test_a_deeply_nested_json_file_is_refused() -> None:
    assert errors_of(DEEP, "d.json") == [
        f"The JSON nests more than {MAX_JSON_DEPTH} levels deep; flatten it."
    ]


def test_a_deeply_nested_messages_column_in_a_csv_is_refused() -> None:
    messages = json.dumps([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([["messages"], [messages], [DEEP]])
    data = out.getvalue()
    errors = errors_of(data, "d.csv")
    assert errors == [
        f"line 3: 'messages': The JSON nests more than {MAX_JSON_DEPTH} levels deep; flatten it."
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": "a\\ud800b"}', "'text' is not valid Unicode text (a lone surrogate at character 2)."),
        ('{"text": "ab\\u0000"}', "'text' is not valid text (a NUL character at character 3)."),
        (
            '{"instruction": "Hi", "input": "\\udfff", "output": "Yo"}',
            "'input' is not valid Unicode text (a lone surrogate at character 1).",
        ),
        (
            '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "x\\ud83d"}]}',
            "message 2 (assistant) is not valid Unicode text (a lone surrogate at character 2).",
        ),
    ],
)
def test_text_that_no_tokenizer_can_encode_is_refused_on_its_line(line: str, message: str) -> None:
    assert errors_of(f"{line}\n", "d.jsonl")[0] == f"line 1: {message}"


def test_a_whole_surrogate_pair_is_text() -> None:
    parsed = parse_dataset(b'{"text": "smile \\ud83d\\ude00"}\n', "d.jsonl")
    assert not parsed.errors
    assert parsed.rows == [{"text": "smile \U0001f600"}]
