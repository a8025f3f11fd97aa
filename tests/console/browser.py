"""Drives the Quorate console in Debian's headless Chromium (Selenium and
chromedriver), for tests/tests/console.rs. Reads a JSON plan from argv[1]:

    {"b": URL of org-b's node, "a": URL of org-a's node,
     "approver": token, "reader": token, "publisher": token, "admin_b": token,
     "approver_a": an approver's token of org-a,
     "proposal": id, "grant": id, "upload": file path,
     "downloads": dir, "screenshots": dir}

and prints one JSON line of what it saw. Any step that does not hold
raises, and the exit status is non-zero.
"""

import json
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

PLAN = json.loads(sys.argv[1])
WAIT = 30


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,900"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {
        "download.default_directory": PLAN["downloads"],
        "download.prompt_for_download": False,
    })
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def until(what, check, limit=WAIT):
    deadline = time.time() + limit
    while True:
        try:
            found = check()
            if found:
                return found
        except WebDriverException:
            pass
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def sign_in(driver, url, token):
    driver.get(url + "/console")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#signin-form button").click()
    until("the signed-in header", lambda: driver.find_element(By.ID, "who").text)


def rendered(driver):
    return int(driver.find_element(By.ID, "page").get_attribute("data-rendered") or 0)


def go(driver, page):
    """Shows `page`, freshly rendered (also when it is already shown)."""
    before = rendered(driver)
    driver.execute_script(
        "if (location.hash === arguments[0]) window.dispatchEvent(new HashChangeEvent('hashchange'));"
        " else location.hash = arguments[0];", "#/" + page)
    until(f"the {page} page", lambda: driver.find_element(By.CSS_SELECTOR, f'nav a[data-page="{page}"].current'))
    until(f"the {page} page's content", lambda: rendered(driver) > before)


def shot(driver, name):
    driver.save_screenshot(os.path.join(PLAN["screenshots"], name + ".png"))


def downloaded(name):
    path = os.path.join(PLAN["downloads"], name)
    until(f"the download of {name}", lambda: os.path.exists(path) and not os.path.exists(path + ".crdownload"))
    return path


def sso():
    """Signs in through the identity provider's button, and says as whom."""
    driver = browser()
    try:
        driver.get(PLAN["sso"] + "/console")
        button = until("the provider's button", lambda: driver.find_element(By.ID, "sso-button") if driver.find_element(By.ID, "sso").is_displayed() else None)
        button.click()
        try:
            who = until("the signed-in header", lambda: driver.find_element(By.ID, "who").text)
        except AssertionError as e:
            shown = driver.find_element(By.TAG_NAME, "body").text[:500]
            raise AssertionError(f"{e}; at {driver.current_url}, the page says {shown!r}; log {driver.get_log('browser')}") from None
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        if errors:
            raise AssertionError(f"the console logged errors: {errors}")
        print(json.dumps({"sso_who": who, "url": driver.current_url}))
    finally:
        driver.quit()


def main():
    if "sso" in PLAN:
        return sso()
    seen = {}
    driver = browser()
    try:
        proposal_row = f'tr[data-proposal="{PLAN["proposal"]}"]'

        # A reader sees the pending proposal but no button to decide it.
        sign_in(driver, PLAN["b"], PLAN["reader"])
        seen["reader_pages"] = [a.get_attribute("data-page") for a in driver.find_elements(By.CSS_SELECTOR, "nav a")]
        go(driver, "proposals")
        row = until("the pending proposal", lambda: driver.find_element(By.CSS_SELECTOR, proposal_row))
        seen["reader_buttons"] = len(row.find_elements(By.CSS_SELECTOR, "button"))
        driver.refresh()

        # An approver approves it, and the grant becomes active.
        sign_in(driver, PLAN["b"], PLAN["approver"])
        go(driver, "proposals")
        row = until("the pending proposal", lambda: driver.find_element(By.CSS_SELECTOR, proposal_row))
        shot(driver, "proposals")
        row.find_element(By.CSS_SELECTOR, 'button[data-action="approve"]').click()
        go(driver, "grants")
        grant_row = f'tr[data-grant="{PLAN["grant"]}"]'

        def active():
            go(driver, "grants")
            rows = driver.find_elements(By.CSS_SELECTOR, grant_row)
            return rows and "active" in rows[0].text

        until("the grant to be active", active)
        shot(driver, "grants")
        driver.find_element(By.CSS_SELECTOR, f'{grant_row} button[data-action="proof"]').click()
        seen["proof"] = downloaded(PLAN["grant"] + ".proof")
        driver.refresh()

        # A publisher of org-a uploads an object.
        sign_in(driver, PLAN["a"], PLAN["publisher"])
        go(driver, "data")
        driver.find_element(By.CSS_SELECTOR, '#upload input[name="path"]').send_keys("reports/q1.csv")
        driver.find_element(By.CSS_SELECTOR, '#upload input[name="file"]').send_keys(PLAN["upload"])
        driver.find_element(By.CSS_SELECTOR, "#upload button").click()
        until("the uploaded object", lambda: driver.find_element(By.CSS_SELECTOR, 'tr[data-object="reports/q1.csv"]'))
        shot(driver, "data")

        # The publisher offers a dataset in org-a's catalog.
        go(driver, "catalog")
        for name, value in (("id", "quarterly"), ("title", "Quarterly reports"), ("resource", "reports/*"),
                            ("longest", "30d"), ("purposes", "planning")):
            driver.find_element(By.CSS_SELECTOR, f'#offer input[name="{name}"]').send_keys(value)
        driver.find_element(By.CSS_SELECTOR, "#offer button").click()
        until("the offer", lambda: driver.find_element(By.CSS_SELECTOR, 'tr[data-offer="quarterly"]'))
        shot(driver, "catalog")
        driver.refresh()

        # org-b's approver finds it in org-a's catalog and asks for access.
        sign_in(driver, PLAN["b"], PLAN["approver"])
        go(driver, "catalog")
        driver.find_element(By.CSS_SELECTOR, "#page form.inline select").send_keys("org-a")
        driver.find_element(By.CSS_SELECTOR, "#page form.inline button").click()
        ask = until("org-a's offer", lambda: driver.find_element(
            By.CSS_SELECTOR, '#peer-catalog tr[data-offer="quarterly"] button[data-action="request access"]'))
        ask.click()
        go(driver, "access")
        row = until("the outgoing request", lambda: driver.find_element(By.CSS_SELECTOR, "tr[data-request]"))
        request = row.get_attribute("data-request")
        seen["access_request"] = request
        driver.refresh()

        # org-a's approver accepts it.
        sign_in(driver, PLAN["a"], PLAN["approver_a"])
        go(driver, "access")
        row = until("the incoming request", lambda: driver.find_element(By.CSS_SELECTOR, f'tr[data-request="{request}"]'))
        row.find_element(By.CSS_SELECTOR, 'button[data-action="accept"]').click()

        def accepted():
            go(driver, "access")
            rows = driver.find_elements(By.CSS_SELECTOR, f'tr[data-request="{request}"]')
            return rows and "accepted" in rows[0].text

        until("the request to be accepted", accepted)
        shot(driver, "access")
        driver.refresh()

        # org-b's reader fetches it through org-b's node, under the grant.
        sign_in(driver, PLAN["b"], PLAN["reader"])
        go(driver, "data")
        driver.find_element(By.CSS_SELECTOR, "#page form.inline select").send_keys("org-a")
        driver.find_element(By.CSS_SELECTOR, "#page form.inline button").click()
        fetch = until("org-a's object", lambda: driver.find_element(By.CSS_SELECTOR, '#peer-objects button[data-action="fetch"]'))
        fetch.click()
        seen["fetched"] = downloaded("q1.csv")
        driver.refresh()

        # The admin's view of each page, for the record.
        sign_in(driver, PLAN["b"], PLAN["admin_b"])
        for page in ("overview", "audit", "ledger"):
            go(driver, page)
            time.sleep(0.5)
            shot(driver, page)
        seen["height"] = driver.find_element(By.ID, "live").text or driver.find_element(By.ID, "height").text
        seen["console_errors"] = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    finally:
        driver.quit()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
