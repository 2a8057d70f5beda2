"""The console in headless Chromium (Debian's, unpacked by `make tools`), against a
console, a worker and the real broker: what the page shows is what the worker published,
and what an agent corrects on the review page is what reaches the feedback topic."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from schemas.learning import Feedback
from tests.integration.console.conftest import (
    MAX_TEXT_CHARS,
    Pipeline,
    console_on,
    learning_topics,
    produce_values,
    published,
    read_all,
)
from tests.unit.worker.console.records import MODEL_VERSION, review_value
from tools import browser
from tools.console_proc import ConsoleProc

HEADS = ("intent", "urgency", "sentiment", "action")
QUEUED = "return [...document.querySelectorAll('#queue li')].map((li) => li.dataset.id)"
CELLS = "return [...document.querySelectorAll(arguments[0])].map((td) => td.innerText.trim())"


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


def test_an_agent_corrects_a_queued_message_by_keys_and_the_agreement_shows_it(
    pipeline: Pipeline, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topics = learning_topics(make_topic)
    hostile = 'my refund <img src=x onerror="document.title=1"> never came'
    produce_values(
        pipeline.bootstrap,
        topics["review"],
        [
            ("m-first", review_value("m-first", hostile, reason="unfamiliar", priority=0.9)),
            ("m-second", review_value("m-second", "can't log in", priority=0.4)),
        ],
    )
    with console_on(pipeline, tmp_path, "--review", topics=topics) as console:
        driver = browser.chrome()
        try:
            driver.get(console.url)
            WebDriverWait(driver, 20).until(
                lambda d: d.find_element(By.ID, "tab-review-link").is_displayed()
            )
            driver.find_element(By.ID, "tab-review-link").click()
            queue = driver.find_element(By.ID, "queue")
            WebDriverWait(driver, 20).until(
                lambda _: len(queue.find_elements(By.TAG_NAME, "li")) == 2
            )
            driver.find_element(By.ID, "agent-name").send_keys("agent-7")
            driver.find_element(By.ID, "agent-save").click()
            assert text_of(driver, "#agent-shown") == "agent-7"

            # The top priority first, its text as text: the markup in it is not markup.
            item = driver.find_element(By.ID, "review-item")
            assert item.get_attribute("data-message-id") == "m-first"
            assert text_of(driver, "#review-text") == hostile
            assert not driver.find_elements(By.CSS_SELECTOR, "#review-text img")
            assert "unfamiliar" in text_of(driver, "#review-reason")
            model = {
                h: driver.find_element(By.CSS_SELECTOR, f'[data-head="{h}"] button.model')
                for h in HEADS
            }
            assert model["intent"].get_attribute("data-label") == "billing_issue"
            assert "60.0%" in model["intent"].text
            assert all("chosen" in (b.get_attribute("class") or "") for b in model.values())

            keys = ActionChains(driver)
            keys.send_keys("j").perform()  # the next message, and back
            assert item.get_attribute("data-message-id") == "m-second"
            keys.send_keys("k").perform()
            assert item.get_attribute("data-message-id") == "m-first"
            keys.send_keys("1").perform()  # intent's first label: refund_request
            chosen = driver.find_element(By.CSS_SELECTOR, '[data-head="intent"] button.chosen')
            assert chosen.get_attribute("data-label") == "refund_request"
            assert text_of(driver, '[data-head="intent"] .corrected') == "corrected"
            assert not driver.find_elements(By.CSS_SELECTOR, '[data-head="action"] .corrected')
            keys.send_keys(Keys.ENTER).perform()

            # Read in one script each: the page redraws these when its next poll comes.
            WebDriverWait(driver, 20).until(lambda d: d.execute_script(QUEUED) == ["m-second"])
            assert "Sent for m-first as agent-7" in text_of(driver, "#review-status")
            row = f'#agreement-body tr[data-version="{MODEL_VERSION}"] td'
            want = [MODEL_VERSION, "1", "0.0% (1)", "100.0% (1)", "100.0% (1)", "100.0% (1)"]
            WebDriverWait(driver, 20).until(lambda d: d.execute_script(CELLS, row) == want)
            assert driver.title == "support-router console"  # the onerror never ran
        finally:
            driver.quit()

    [(key, value)] = read_all(pipeline.bootstrap, topics["feedback"])
    fb = Feedback.model_validate_json(value)
    assert (key, fb.agent_id, fb.model_version) == (b"m-first", "agent-7", MODEL_VERSION)
    assert fb.labels.given() == {
        "intent": "refund_request",
        "urgency": "high",
        "sentiment": "angry",
        "action": "escalate_to_human",
    }


# The page reloads at login and logout: an element read mid-reload is stale, try again.
RELOADING = (StaleElementReferenceException, NoSuchElementException)


def log_in(driver: WebDriver, user: str, password: str) -> None:
    """Types into the login form; the page reloads as the user."""
    WebDriverWait(driver, 20, ignored_exceptions=RELOADING).until(
        lambda d: d.find_element(By.ID, "login-form").is_displayed()
    )
    driver.find_element(By.ID, "login-user").send_keys(user)
    driver.find_element(By.ID, "login-password").send_keys(password)
    driver.find_element(By.ID, "login-submit").click()
    WebDriverWait(driver, 20, ignored_exceptions=RELOADING).until(
        lambda d: (
            d.find_element(By.ID, "me-user").text == user
            and d.find_element(By.ID, "stream-state").text == "live"
        )
    )


def log_out(driver: WebDriver) -> None:
    driver.find_element(By.ID, "logout").click()
    WebDriverWait(driver, 20, ignored_exceptions=RELOADING).until(
        lambda d: d.find_element(By.ID, "login").is_displayed()
    )


# What the page's own script could send, bypassing its buttons: the server decides.
FORCE_TRY = """
const done = arguments[arguments.length - 1];
post("/api/try", { text: "sent around the page" }).then((r) => done(r.status));
"""
FORCE_CORRECTION = """
const done = arguments[arguments.length - 1];
post("/api/review/feedback/m-1", { labels: {} }).then((r) => done(r.status));
"""


def test_each_role_logs_in_and_sees_and_does_only_its_part(
    pipeline: Pipeline, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    from worker.console.auth.roles import Role
    from worker.console.auth.users import hash_line

    topics = learning_topics(make_topic)
    private = "please refund order 4471, my address is 12 Elm St"
    produce_values(pipeline.bootstrap, topics["review"], [("m-1", review_value("m-1", private))])
    users = tmp_path / "users"
    users.write_text(
        "".join(
            hash_line(n, r, f"{n}-password") + "\n"
            for n, r in (("vera", Role.VIEWER), ("ana", Role.AGENT), ("otto", Role.OPERATOR))
        )
    )
    args = ("--review", "--users-file", str(users))
    with console_on(pipeline, tmp_path, *args, topics=topics) as console:
        driver = browser.chrome()
        try:
            driver.get(console.url)
            # No session: the login form and nothing else.
            WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "login").is_displayed())
            assert not driver.find_element(By.ID, "tab-live").is_displayed()
            driver.find_element(By.ID, "login-user").send_keys("ana")
            driver.find_element(By.ID, "login-password").send_keys("wrong")
            driver.find_element(By.ID, "login-submit").click()
            note = driver.find_element(By.ID, "login-note")
            WebDriverWait(driver, 20).until(lambda _: "wrong name or password" in note.text)
            driver.find_element(By.ID, "login-user").clear()

            # viewer: the live view; no try, no review, and the server refuses both.
            log_in(driver, "vera", "vera-password")
            assert text_of(driver, "#me-role") == "viewer"
            assert not driver.find_element(By.ID, "try").is_displayed()
            assert not driver.find_element(By.ID, "tab-review-link").is_displayed()
            assert driver.find_element(By.ID, "live").is_displayed()
            driver.get(console.url + "#review")
            assert not driver.find_element(By.ID, "tab-review").is_displayed()
            assert driver.execute_async_script(FORCE_TRY) == 403
            assert driver.execute_async_script(FORCE_CORRECTION) == 403
            assert private not in driver.page_source
            log_out(driver)

            # agent: the review page with the queued text, labelled as the session's user.
            log_in(driver, "ana", "ana-password")
            assert not driver.find_element(By.ID, "try").is_displayed()
            assert driver.execute_async_script(FORCE_TRY) == 403
            driver.find_element(By.ID, "tab-review-link").click()
            WebDriverWait(driver, 20).until(lambda d: d.execute_script(QUEUED) == ["m-1"])
            assert text_of(driver, "#review-text") == private
            assert not driver.find_element(By.ID, "agent-form").is_displayed()
            assert text_of(driver, "#agent-shown") == "ana"
            assert not driver.find_element(By.ID, "agent-change").is_displayed()
            ActionChains(driver).send_keys("1").send_keys(Keys.ENTER).perform()
            WebDriverWait(driver, 20).until(lambda d: d.execute_script(QUEUED) == [])
            # The queue is empty, so the item's card (and its status line) is hidden.
            status = driver.execute_script("return $('review-status').textContent")
            assert "Sent for m-1 as ana" in status
            log_out(driver)
            assert driver.get_cookies() == []  # the session cookie is gone

            # operator: try a message (on the live tab: the page reopens on #review).
            log_in(driver, "otto", "otto-password")
            driver.find_element(By.ID, "tab-live-link").click()
            assert driver.find_element(By.ID, "try").is_displayed()
            assert submit(driver, "my card was declined, help") == "routed"
        finally:
            driver.quit()

    [(key, value)] = read_all(pipeline.bootstrap, topics["feedback"])
    fb = Feedback.model_validate_json(value)
    assert (key, fb.agent_id) == (b"m-1", "ana")
    assert fb.labels.given()["intent"] == "refund_request"
