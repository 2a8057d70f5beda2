"""The console in headless Chromium (Debian's, unpacked by `make tools`), against a
console, a worker and the real broker: what the page shows is what the worker published."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.integration.console.conftest import MAX_TEXT_CHARS, Pipeline, published
from tools import browser
from tools.console_proc import ConsoleProc

HEADS = ("intent", "urgency", "sentiment", "action")


@pytest.fixture(scope="module")
def page(console: ConsoleProc) -> Iterator[WebDriver]:
    driver = browser.chrome()
    try:
        driver.get(console.url)
        # Connected: the samples came from /api/config and the event stream is open.
        WebDriverWait(driver, 20).until(
            lambda d: (
                d.find_elements(By.CSS_SELECTOR, "button.sample")
                and d.find_element(By.ID, "stream-state").text == "live"
            )
        )
        yield driver
    finally:
        driver.quit()


def submit(page: WebDriver, text: str) -> str:
    """Types ``text``, presses the button, waits for the answer; returns its status."""
    box = page.find_element(By.ID, "text")
    box.clear()
    if text:
        box.send_keys(text)
    page.find_element(By.ID, "submit").click()
    result = page.find_element(By.ID, "result")
    WebDriverWait(page, 30).until(
        lambda _: result.get_attribute("data-status") not in ("idle", "waiting")
    )
    return str(result.get_attribute("data-status"))


def text_of(page: WebDriver, css: str) -> str:
    return str(page.find_element(By.CSS_SELECTOR, css).text)


def test_a_typed_message_shows_the_route_and_heads_the_worker_published(
    page: WebDriver, pipeline: Pipeline
) -> None:
    assert submit(page, "WTF!!! my card got declined AGAIN. FIX THIS NOW!") == "routed"
    message_id = page.find_element(By.ID, "result").get_attribute("data-message-id")
    assert message_id and message_id.startswith("console-")
    topic, value = published(pipeline, message_id)

    assert text_of(page, "#result-route") == value["route"]
    assert topic == getattr(pipeline.topics, value["route"])
    assert text_of(page, "#result-action") == value["action"]
    assert text_of(page, "#result-reason") == value["routing"]["reason"]
    shown = {h: text_of(page, f'[data-head="{h}"] .head-label') for h in HEADS}
    assert shown == {h: value["predictions"][h]["label"] for h in HEADS}
    for h in HEADS:  # one bar per label of the head
        bars = page.find_elements(By.CSS_SELECTOR, f'[data-head="{h}"] .bar')
        assert len(bars) == len(value["predictions"][h]["probabilities"])
    assert text_of(page, "#result-model") == f"{value['model']['name']} {value['model']['version']}"
    assert text_of(page, "#batch-size") == str(value["timing"]["batch_size"])
    assert text_of(page, "#latency-e2e").endswith(" ms")
    assert text_of(page, "#latency-inference").endswith(" ms")


def test_empty_text_shows_no_predictions_and_its_reason(
    page: WebDriver, pipeline: Pipeline
) -> None:
    assert submit(page, "") == "routed"
    message_id = page.find_element(By.ID, "result").get_attribute("data-message-id")
    _, value = published(pipeline, str(message_id))
    assert value["predictions"] is None
    assert text_of(page, "#result-reason") == "empty_text" == value["routing"]["reason"]
    assert text_of(page, "#result-route") == value["route"]
    assert "model was not run" in text_of(page, "#no-predictions")
    assert not page.find_elements(By.CSS_SELECTOR, "[data-head]")


def test_a_text_over_the_limit_shows_its_dead_letter(page: WebDriver, pipeline: Pipeline) -> None:
    assert submit(page, "a" * (MAX_TEXT_CHARS + 1)) == "dead_letter"
    assert text_of(page, "#dlq-stage") == "validate"
    assert text_of(page, "#dlq-type") == "TextTooLong"
    assert (
        text_of(page, "#dlq-reason")
        == f"text has {MAX_TEXT_CHARS + 1} chars, limit {MAX_TEXT_CHARS}"
    )
    assert not page.find_elements(By.CSS_SELECTOR, "[data-head]")


def test_live_dead_letters_appear_without_their_text(page: WebDriver, pipeline: Pipeline) -> None:
    mid = f"live-{uuid.uuid4().hex[:8]}"
    private = "call me on 555-0100 " * 20
    producer = Producer({"bootstrap.servers": pipeline.bootstrap})
    producer.produce(pipeline.topics.inbound, json.dumps({"message_id": mid, "text": private}))
    assert producer.flush(10) == 0
    feed = page.find_element(By.ID, "dead-letters")
    WebDriverWait(page, 30).until(lambda _: mid in feed.text)
    item = next(li for li in feed.find_elements(By.TAG_NAME, "li") if mid in li.text)
    assert "validate · TextTooLong" in item.text
    assert "text hidden" in item.text
    assert "555-0100" not in page.page_source
