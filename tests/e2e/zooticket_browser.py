"""Drives Debian's chromium (headless, through chromedriver and python3-selenium) over the ZooTicket
hosted payment page; run with /usr/bin/python3, which sees python3-selenium. Not a test file:
test_zooticket_page.py runs it and checks what it prints (one JSON object).

    zooticket_browser.py pay|cancel|look|stay URL [EXPECTED_URL_PREFIX] [METHOD]

pay: reads the page, picks METHOD by clicking its label, focuses "Pay" and presses Enter (the
keyboard path), then waits until the browser is at EXPECTED_URL_PREFIX. cancel: the same with the
cancel button. look: only reads the page. stay: reads the page, touches nothing, and waits (60 s
at most) until the page says the link has expired, then reads it again.
"""

import json
import sys
import tempfile

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait


def page_facts(driver) -> dict:
    facts = {"url": driver.current_url, "title": driver.title,
             "h1": driver.find_element(By.TAG_NAME, "h1").text,
             "lang": driver.find_element(By.TAG_NAME, "html").get_attribute("lang")}
    for element_id in ("description", "total", "time-left", "status"):
        found = driver.find_elements(By.ID, element_id)
        facts[element_id] = found[0].text if found else None
    facts["labels"] = {}
    for radio in driver.find_elements(By.CSS_SELECTOR, "input[type=radio]"):
        label = driver.find_elements(By.CSS_SELECTOR, f"label[for='{radio.get_attribute('id')}']")
        facts["labels"][radio.get_attribute("value")] = label[0].text if label else None
    back = driver.find_elements(By.ID, "back")
    facts["back"] = back[0].get_attribute("href") if back else None
    # Every resource the page loaded came from the page's own origin (no third-party assets).
    facts["resources"] = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    return facts


def main() -> int:
    action, url = sys.argv[1], sys.argv[2]
    expected = sys.argv[3] if len(sys.argv) > 3 else ""
    method = sys.argv[4] if len(sys.argv) > 4 else ""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="paygate-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    out = {}
    try:
        driver.get(url)
        out["page"] = page_facts(driver)
        if action in ("pay", "cancel"):
            if action == "pay":
                if method:
                    driver.find_element(By.CSS_SELECTOR, f"label[for='method-{method}']").click()
                out["checked"] = driver.find_element(By.CSS_SELECTOR, "input[type=radio]:checked").get_attribute("value")
                button = driver.find_element(By.ID, "pay")
                button.send_keys(Keys.NULL)   # focus it
                button.send_keys(Keys.ENTER)
            else:
                driver.find_element(By.ID, "cancel").click()
            try:
                WebDriverWait(driver, 60, poll_frequency=0.2).until(lambda d: d.current_url.startswith(expected))
            except TimeoutException:
                out["timeout"] = True
            out["final_url"] = driver.current_url
            out["final_text"] = driver.find_element(By.TAG_NAME, "body").text
        elif action == "stay":
            try:
                # The page reloads under us: an element read while it does is stale, or not there yet.
                WebDriverWait(driver, 60, poll_frequency=0.2,
                              ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
                    lambda d: d.find_element(By.TAG_NAME, "h1").text == "This payment link has expired")
            except TimeoutException:
                out["timeout"] = True
            out["final"] = page_facts(driver)
    finally:
        driver.quit()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
