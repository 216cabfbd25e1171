"""End to end: the tokenizer lab in Chromium, on the real default model, with a real worker beside it."""

from __future__ import annotations

import pytest

from llmcore import tokenize as core
from llmcore.pulls import DEFAULT_MODEL
from tests.conftest import REAL_MODEL_STORE
from tests.e2e.conftest import ARTIFACTS, Site, logged_in_page

pytestmark = pytest.mark.integration


def expected(text: str) -> core.Tokenization:
    return core.tokenize(core.load_pretrained_tokenizer(REAL_MODEL_STORE / DEFAULT_MODEL), text)


def test_chips_and_counts_follow_the_text_as_you_type(site: Site, browser) -> None:
    from playwright.sync_api import expect

    page = logged_in_page(site, browser, "/tokenize/")
    column = page.locator(".column").first
    box = page.locator("#id_text")
    box.fill("Hello world")
    expect(column.locator('[data-count="characters"]')).to_have_text("11")
    expect(column.locator(".chip .txt")).to_have_text(["Hello", "·world"])
    expect(column.locator('[data-count="tokens"]')).to_have_text("2")

    box.press("End")
    box.press_sequentially(" 👋🏽\tdone")  # keystrokes, as a person types
    text = "Hello world 👋🏽\tdone"
    tokens = expected(text)
    expect(column.locator('[data-count="characters"]')).to_have_text(str(len(text)))
    expect(column.locator('[data-count="tokens"]')).to_have_text(str(tokens.counts.tokens))
    expect(column.locator('[data-count="bytes"]')).to_have_text(str(tokens.counts.bytes))
    expect(column.locator(".chip")).to_have_count(tokens.counts.tokens)
    expect(column.locator(".chip.bytes").first).to_have_text("·<0xF0><0x9F>" + str(tokens.tokens[2].id))
    expect(column.locator("[data-roundtrip]")).to_have_text("✓ round trip: exact")

    ids = column.locator(".chip .tid").first
    expect(ids).to_be_hidden()
    page.get_by_label("Show IDs under the tokens").check()
    expect(ids).to_be_visible()
    expect(ids).to_have_text(str(tokens.tokens[0].id))
    expect(page.locator("#pipeline")).to_contain_text("none: this tokenizer takes the text exactly as typed")
    expect(page.locator("table.emb tbody tr")).to_have_count(tokens.counts.tokens)


def test_the_conversation_is_rendered_through_the_chat_template_as_you_type(site: Site, browser) -> None:
    from playwright.sync_api import expect

    page = logged_in_page(site, browser, "/tokenize/")
    rendered = page.locator("pre.rendered")
    expect(rendered.locator("mark.special")).to_have_count(6)  # the example: three turns
    page.locator("#chat_assistant").fill("")
    page.locator("#chat_user").fill("Is <b>this</b> one token?")
    expect(rendered).to_contain_text("<|im_start|>user\nIs <b>this</b> one token?<|im_end|>")
    expect(rendered.locator("mark.special")).to_have_count(4)
    page.get_by_label("End with the prompt for the assistant's next turn (add_generation_prompt)").check()
    expect(rendered.locator("mark.special")).to_have_count(5)
    expect(page.locator('[data-count="chat-special"]')).to_have_text("5")


def test_a_trained_tokenizer_is_compared_side_by_side(site: Site, browser) -> None:
    from playwright.sync_api import expect

    page = logged_in_page(site, browser, "/tokenize/")
    page.get_by_label("Name").fill("my-first-bpe")
    page.get_by_label("Vocabulary size").fill("400")
    page.get_by_label("Training text").fill("The cat sat on the mat. The dog sat on the log.\n" * 50)
    page.get_by_role("button", name="Train").click()
    expect(page.locator("#train-box .message.success")).to_contain_text("Trained “my-first-bpe”")

    page.reload()
    page.locator("#id_text").fill("The cat sat on the mat 🐈 with  two spaces.\tTabs, naïve café, 12345!")
    page.get_by_label("my-first-bpe (trained BPE (byte-level))").check()
    columns = page.locator(".column")
    expect(columns).to_have_count(2)
    expect(columns.nth(1).locator("h2")).to_contain_text("my-first-bpe")
    expect(columns.nth(1).locator("[data-roundtrip]")).to_have_text("✓ round trip: exact")
    page.get_by_label("Show IDs under the tokens").check()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "tokenizer-lab.png"), full_page=True)


def test_a_big_upload_is_trained_by_the_worker_and_the_page_notices(site: Site, browser, tmp_path) -> None:
    from playwright.sync_api import expect

    page = logged_in_page(site, browser, "/tokenize/")
    corpus = tmp_path / "corpus.txt"
    lines = [
        f"Line {i}: the worker trains tokenizers that are too big to train in a web request.\n"
        for i in range(3000)
    ]
    corpus.write_text("".join(lines), encoding="utf-8")
    assert corpus.stat().st_size > 200_000
    page.get_by_label("Name").fill("from-the-worker")
    page.get_by_label("or a .txt file").set_input_files(str(corpus))
    page.get_by_role("button", name="Train").click()
    expect(page.locator("#train-box .message.success")).to_contain_text("is queued")
    row = page.locator('#trained tr[data-tokenizer="from-the-worker"]')
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "ready", timeout=120_000)
    expect(row.get_by_role("link", name="Use in the lab")).to_be_visible()
