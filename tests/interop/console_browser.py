"""The web console in real headless Chromium, through WebDriver (Selenium, Debian's chromium and
chromium-driver): sign in through the test IdP (oidc-provider), the queue, an action, approve with
changes, a second session's queue updated live over SSE, and refusals; axe-core runs on every
console page. Started by crates/server/tests/it/console_browser.rs with one JSON argument:

  {"url": console base, "action": id of an open review, "mine": id of a review acting for alice,
   "axe": path of axe.min.js, "shots": directory for screenshots}

Prints one JSON line of results; any failed check raises (exit status 1).
"""

import json
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import (NoSuchElementException, StaleElementReferenceException,
                                        TimeoutException, WebDriverException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ARGS = json.loads(sys.argv[1])
URL = ARGS["url"]
AXE = open(ARGS["axe"], encoding="utf-8").read()
PAGES_CHECKED = []


def browser(width=1280, height=900, dark=False):
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={width},{height}"):
        opts.add_argument(a)
    if dark:
        opts.add_argument("--force-dark-mode")
        opts.add_argument("--blink-settings=preferredColorScheme=0")
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(30)
    return driver


def wait(driver, cond, what, timeout=15):
    def safe(d):
        # A page that navigates while it is read (its old nodes gone) is "not yet".
        try:
            return cond(d)
        except (StaleElementReferenceException, NoSuchElementException, WebDriverException):
            return False
    try:
        return WebDriverWait(driver, timeout).until(safe)
    except TimeoutException:
        attrs = driver.execute_script(
            "return [document.body.getAttribute('data-listening'),"
            " document.body.getAttribute('data-refreshed'), document.title]")
        try:
            logs = driver.get_log("browser")
        except Exception:  # noqa: BLE001 - diagnostics only
            logs = []
        raise AssertionError(f"timed out waiting for {what}; at {driver.current_url} {attrs} "
                             f"{logs}: {driver.page_source[:600]}")


def axe(driver, name):
    """No serious or critical axe-core violation on the page."""
    driver.execute_script(AXE)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations))"
        ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));")
    bad = [v for v in result if v.get("impact") in ("serious", "critical")]
    assert not bad, f"axe-core on {name}: " + json.dumps(
        [{"id": v["id"], "impact": v["impact"], "help": v["help"],
          "nodes": [n.get("html") for n in v.get("nodes", [])][:3]} for v in bad], indent=1)
    PAGES_CHECKED.append(name)


def sign_in(driver, login, start="/console"):
    driver.get(URL + start)
    wait(driver, lambda d: "/interaction/" in d.current_url, "the IdP's sign-in page")
    driver.find_element(By.ID, "login").send_keys(login)
    driver.find_element(By.ID, "sign-in").click()
    wait(driver, lambda d: d.current_url.startswith(URL + "/console"), "the console after sign-in")


def post_from_page(driver, path, fields):
    """A form POST made by the page's own script (same origin, the session's cookie)."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {method: 'POST', body: new URLSearchParams(arguments[1]),"
        " credentials: 'same-origin'}).then(r => r.text().then(t => done([r.status, t])))"
        ".catch(e => done([0, String(e)]));", path, fields)


def main():
    results = {}
    # A session that ends while its page is open: the form is refused, sign in again. Its
    # browser starts first: the session's life runs from before this script started, and each
    # Chromium start takes seconds on a loaded machine.
    late = browser()
    alice = bob = None
    try:
        try:
            late.get(URL + "/console/signed-out")
            late.add_cookie({"name": "cs_session", "value": ARGS["short_session"], "path": "/"})
            late.get(URL + "/console/actions/" + ARGS["step_up"])
            assert time.time() < ARGS["short_ends"], "the short session ended before its page loaded"
            late.find_element(By.ID, "deny")
            time.sleep(max(0.0, ARGS["short_ends"] - time.time()) + 0.5)
            late.find_element(By.ID, "deny").click()
            wait(late, lambda d: "session has ended" in d.find_element(By.TAG_NAME, "body").text,
                 "the expired session's refusal")
            axe(late, "session ended")
        finally:
            late.quit()

        alice = browser()
        bob = browser(390, 844, dark=True)  # a phone-width screen, dark
        # Alice signs in through the IdP and lands on her queue.
        sign_in(alice, "alice")
        # Hers to review: the deploy and the step-up restart (not the one acting for her).
        assert alice.title.startswith("(2) Reviews"), alice.title
        assert alice.find_element(By.ID, "signed-in-as").text == "alice"
        rows = alice.find_elements(By.CSS_SELECTOR, "#queue tbody tr")
        assert len(rows) == 2, len(rows)
        axe(alice, "queue")
        alice.save_screenshot(ARGS["shots"] + "/console-queue.png")

        # Bob, on a phone in dark mode, has the same review in his queue, listening live.
        sign_in(bob, "bob")
        before = int(bob.find_element(By.ID, "queue-count").text)
        assert before >= 1, before
        axe(bob, "queue (phone, dark)")
        wait(bob, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-listening"),
             "bob's page to listen to /console/events")
        bob.execute_script("window.__noReload = true;")

        # Alice opens the action: its whole context.
        alice.find_element(By.CSS_SELECTOR, "a[href='/console/actions/" + ARGS["action"] + "']").click()
        wait(alice, lambda d: "/console/actions/" in d.current_url, "the action page")
        body = alice.find_element(By.TAG_NAME, "body").text
        for shown in ("release 1.2.3", "api-service", "prod", "deploys need an SRE", "replicas"):
            assert shown in body, f"{shown} on the action page"
        axe(alice, "action")
        alice.set_window_size(1280, 1900)  # the whole page, the decision forms included
        alice.save_screenshot(ARGS["shots"] + "/console-action.png")
        alice.set_window_size(1280, 900)

        # Approve with changes: the editor refuses invalid JSON before it is sent.
        alice.find_element(By.CSS_SELECTOR, "details.modify summary").click()
        editor = alice.find_element(By.ID, "params-editor")
        editor.clear()
        editor.send_keys('{"version": "1.2.3", "replicas": ')
        alice.find_element(By.ID, "approve-with-changes").click()
        wait(alice, lambda d: "Not valid JSON" in d.find_element(By.ID, "params-error").text,
             "the editor's JSON error")
        assert "/console/actions/" in alice.current_url and "vote" not in alice.current_url
        editor.clear()
        editor.send_keys('{"version": "1.2.3", "replicas": 2}')
        alice.find_element(By.ID, "modify-comment").send_keys("two is enough")
        alice.find_element(By.ID, "approve-with-changes").click()
        wait(alice, lambda d: d.find_elements(By.CSS_SELECTOR, "#status.status-approved"),
             "the approved action")
        assert alice.find_elements(By.ID, "diff"), "the diff of the modified parameters"
        assert not alice.find_elements(By.ID, "approve"), "no buttons once decided"
        axe(alice, "action (approved, with diff)")

        # Bob's queue empties live, without a reload.
        wait(bob, lambda d: d.find_element(By.ID, "queue-count").text == str(before - 1),
             "bob's queue to update over SSE", timeout=10)
        assert bob.execute_script("return window.__noReload === true;"), "bob's page was reloaded"
        assert bob.title.startswith(f"({before - 1}) Reviews"), bob.title
        results["live"] = True

        # The history, filtered.
        alice.get(URL + "/console/history")
        Select = __import__("selenium.webdriver.support.select", fromlist=["Select"]).Select
        Select(alice.find_element(By.ID, "f-status")).select_by_value("approved")
        alice.find_element(By.ID, "filter").click()
        wait(alice, lambda d: "status=approved" in d.current_url, "the filtered history")
        assert len(alice.find_elements(By.CSS_SELECTOR, "#history tbody tr")) == 1
        axe(alice, "history")

        # The admin page (alice is in the admin group here): create a key, shown once.
        alice.get(URL + "/console/admin")
        alice.find_element(By.ID, "k-identity").send_keys("release-bot")
        alice.find_element(By.ID, "k-groups").send_keys("automation")
        alice.find_element(By.ID, "create").click()
        wait(alice, lambda d: d.find_elements(By.ID, "key-secret"), "the new key's secret")
        assert alice.find_element(By.ID, "key-secret").text.startswith("csk_")
        axe(alice, "admin")

        # The audit page: the checkpoint, and an entry's inclusion checked in the browser.
        for _ in range(20):
            alice.get(URL + "/console/audit")
            if alice.find_elements(By.CSS_SELECTOR, "button.verify"):
                break
            time.sleep(0.5)  # the first checkpoint is signed within a second
        axe(alice, "audit")
        button = alice.find_element(By.CSS_SELECTOR, "button.verify")
        index = button.get_attribute("data-index")
        button.click()
        wait(alice, lambda d: "included in checkpoint" in d.find_element(By.ID, "verified-" + index).text,
             "the inclusion proof verified with WebCrypto")
        # The same check fails for an entry that is not the one logged.
        forged = alice.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('/console/audit/proof?index=' + arguments[0]).then(r => r.json()).then(p => {"
            " const bytes = atob(p.entry); p.entry = btoa(bytes.slice(0, -2) + 'X}');"
            " return window.countersignVerifyInclusion(p); }).then(done).catch(e => done(String(e)));",
            index)
        assert forged is False, forged
        results["inclusion_verified"] = True

        # Self-approval: an action acting for alice offers her no buttons, and a vote posted
        # anyway is refused by the core.
        alice.get(URL + "/console/actions/" + ARGS["mine"])
        assert not alice.find_elements(By.ID, "approve"), "no buttons on one's own action"
        csrf = alice.find_element(By.NAME, "csrf").get_attribute("value")
        seen = alice.find_element(By.XPATH, "//dt[text()='Digest']/following-sibling::dd[1]/code").text
        status, text = post_from_page(alice, "/console/actions/" + ARGS["mine"] + "/vote",
                                      {"csrf": csrf, "digest": seen, "decision": "approve"})
        assert status == 403 and "self_approval" in text, (status, text[:500])

        # CSRF: a form without the token is refused.
        status, text = post_from_page(alice, "/console/actions/" + ARGS["mine"] + "/vote",
                                      {"decision": "deny"})
        assert status == 403, (status, text[:500])

        # A tampered session cookie opens nothing: the browser is sent to sign in again (the
        # IdP still knows bob, so it comes back at once, with a new session).
        bob.delete_cookie("cs_session")
        bob.add_cookie({"name": "cs_session", "value": "A" * 43, "path": "/"})
        bob.get(URL + "/console")
        wait(bob, lambda d: (d.get_cookie("cs_session") or {}).get("value", "A" * 43) != "A" * 43,
             "a new session after a tampered cookie")
        assert bob.find_element(By.ID, "signed-in-as").text == "bob"

        # A step-up review: bob's sign-in had no MFA, so the page says so and his approval is
        # refused.
        bob.get(URL + "/console/actions/" + ARGS["step_up"])
        assert "multi-factor" in bob.find_element(By.ID, "mfa-notice").text
        bob.find_element(By.ID, "approve").click()
        wait(bob, lambda d: "mfa_required" in d.find_element(By.TAG_NAME, "body").text,
             "the step-up refusal")
        axe(bob, "step-up refused")

        # An agent identity at the IdP cannot sign in.
        agent = browser()
        try:
            agent.get(URL + "/console")
            wait(agent, lambda d: "/interaction/" in d.current_url, "the IdP")
            agent.find_element(By.ID, "login").send_keys("deploy-bot")
            agent.find_element(By.ID, "sign-in").click()
            wait(agent, lambda d: "for people" in d.find_element(By.TAG_NAME, "body").text,
                 "the refusal page")
            axe(agent, "sign-in refused")
        finally:
            agent.quit()

        # Sign out: the signed-out page.
        alice.get(URL + "/console")
        alice.find_element(By.ID, "logout").click()
        wait(alice, lambda d: d.current_url.startswith(URL + "/console/signed-out")
             or "/session/end" in d.current_url, "sign-out")
        if "/session/end" in alice.current_url:
            # oidc-provider asks to confirm the IdP logout.
            alice.find_element(By.CSS_SELECTOR, "button[autofocus], button").click()
            wait(alice, lambda d: d.current_url.startswith(URL + "/console/signed-out"),
                 "back from the IdP's logout")
        axe(alice, "signed out")
        results["signed_out"] = True
    finally:
        for b in (alice, bob):
            if b is not None:
                b.quit()
    results["axe_pages"] = PAGES_CHECKED
    print(json.dumps(results))


if __name__ == "__main__":
    main()
