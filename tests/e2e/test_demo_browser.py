"""``hulumed demo`` in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

Uploads a NIfTI volume, moves the slice slider, asks a question, waits for the streamed answer and saves a
screenshot to tests/artifacts/demo.png (ignored by git; docs/images/demo.png is a copy of one). It also
checks the page loaded nothing from outside the loopback server. Skipped when Chromium is not installed
(`.ci/run` installs it).
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

pytest.importorskip("gradio")
webdriver = pytest.importorskip("selenium.webdriver")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("headless browser test needs Debian's chromium and chromium-driver "
                "(apt-get install -y chromium chromium-driver)", allow_module_level=True)

import hulumed  # noqa: E402
from hulumed.demo.app import build_demo, launch  # noqa: E402
from tests.conftest import GOLDEN  # noqa: E402

ARTIFACTS = Path(__file__).parents[1] / "artifacts"


@pytest.fixture(scope="module")
def url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = build_demo(hulumed.load(GOLDEN / "tiny-qwen2", device="cpu"))
    _, local, _ = launch(demo, port=port, block=False)
    yield local.rstrip("/")
    demo.close()


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1500,1700", "--no-first-run", "--disable-background-networking"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_volume_slider_question_streamed_answer(url, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(url)
    upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]")))
    upload.send_keys(str(GOLDEN / "inputs" / "volume.nii.gz"))
    wait.until(ec.text_to_be_present_in_element((By.ID, "volume-info"), "12 slices along axis 2"))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#strip img")) >= 12)

    slider = browser.find_element(By.CSS_SELECTOR, "#slice-slider input[type=range]")
    assert slider.get_attribute("max") == "11" and slider.get_attribute("value") == "6"
    slider.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)  # the browser fires input events, as a drag does
    wait.until(ec.text_to_be_present_in_element((By.ID, "slice-slider"), "slice 8 (received by the model)"))

    browser.find_element(By.CSS_SELECTOR, "#settings button").click()  # open the settings accordion
    tokens = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#max-tokens input[type=number]")))
    tokens.send_keys(Keys.CONTROL, "a")
    tokens.send_keys("48", Keys.TAB)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#max-tokens input[type=range]").get_attribute("value")
               == "48")

    box = browser.find_element(By.CSS_SELECTOR, "#message textarea")
    box.send_keys("Describe the main findings in this CT volume.")
    browser.find_element(By.ID, "send").click()
    bot = (By.CSS_SELECTOR, "#chat .message-row.bot-row, #chat [data-testid=bot]")
    wait.until(lambda d: any(e.text.strip() for e in d.find_elements(*bot)))  # the answer appears while streaming
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "finish:"))
    answer = " ".join(e.text for e in browser.find_elements(*bot)).strip()
    assert answer
    assert "48 tokens" in browser.find_element(By.ID, "status").text or "finish: stop" in browser.find_element(
        By.ID, "status").text
    assert "volume.nii.gz" in browser.find_element(By.ID, "chat").text  # the user turn names its attachment

    ARTIFACTS.mkdir(exist_ok=True)
    browser.execute_script(  # show the start of the conversation (the user turn and its attachment)
        "document.querySelectorAll('#chat *').forEach(e => { if (e.scrollHeight > e.clientHeight) e.scrollTop = 0; });"
        "window.scrollTo(0, 0);")
    assert browser.save_screenshot(str(ARTIFACTS / "demo.png"))

    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    outside = [u for u in loaded if not u.startswith((url, "data:", "blob:"))]
    assert outside == [], f"the page requested outside resources: {outside}"
