"""The built book in a real browser (headless Chromium, driven through its own ChromeDriver): every page
loads with no console error and nothing from the network, its images load and its equations render; search
finds a term of chapter 10; a solution toggle opens; the launch and download buttons point somewhere real.
Screenshots of three pages are kept in _build/browser/ as artefacts.

The book is served from 127.0.0.1 by a server that this file starts and stops, as a reader's browser would
load it from a web server. Chromium and ChromeDriver are Debian's packages (`.ci/run` installs them when they
are missing); without them these tests skip and say how to install them. Nothing downloads a driver:
Selenium is given ChromeDriver's path, so its driver manager never runs."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import tempfile
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import HTML, REPO, browser  # noqa: F401 (browser: a fixture, one Chromium per module)

# The same worker as tests/test_book.py, whose session fixture built_book builds the book once for both.
pytestmark = [pytest.mark.xdist_group("tests/test_book.py"), pytest.mark.timeout(600)]

SHOTS = REPO / "_build" / "browser"
CHAPTER_10_TERM = "FAISS"
# URL schemes that never leave the machine: inline data, and the browser's own pages (its new-tab page)
BROWSER_INTERNAL = {"data", "blob", "about", "chrome", "chrome-untrusted"}  # a word of chapter 10 (vector search) that the search page must find


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the test reports failures itself
        pass


@pytest.fixture(scope="module")
def site(built_book):
    """The built book served on a free port of 127.0.0.1; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=HTML))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def open_page(driver, url: str, timeout: float = 30) -> None:
    """Load ``url`` and return once the browser shows that page, loaded, with the theme's main part.

    ChromeDriver's ``get`` can return before the new page is the one that scripts and element lookups
    see: on a loaded machine a lookup just after it found nothing, now and then (a few times in a hundred
    page loads here, once in CI), on a page that has it. Every test here looks at a page only once it is
    there."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    shown = ("return document.URL === arguments[0] && document.readyState === 'complete'"
             " && document.querySelector('.bd-main') !== null")
    try:
        WebDriverWait(driver, timeout).until(lambda d: d.execute_script(shown, url))
    except TimeoutException:
        state = driver.execute_script("return [document.URL, document.readyState, document.title]")
        raise AssertionError(f"{url} was not shown, loaded, within {timeout:.0f} s; the browser shows {state}") from None


def drain(driver) -> None:
    """Forget the logs of earlier pages."""
    driver.get_log("browser")
    driver.get_log("performance")


def page_problems(driver, url: str, base: str) -> list[str]:
    """Load one page and list what is wrong with it, one line each (an empty list: all is well)."""
    drain(driver)
    open_page(driver, url)
    # MathJax typesets after the load event; wait for it when the page has maths
    driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const wait = () => (window.MathJax && MathJax.startup && MathJax.startup.promise)
            ? MathJax.startup.promise.then(() => done(true), () => done(false)) : done(null);
        document.readyState === 'complete' ? wait() : window.addEventListener('load', wait);""")
    problems = [f"console {e['level']}: {e['message'][:300]}" for e in driver.get_log("browser")
                if e["level"] == "SEVERE"]
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requested = message["params"]["request"]["url"]
            if not (requested.startswith(base) or requested.split(":", 1)[0] in BROWSER_INTERNAL):
                problems.append(f"loads from the network: {requested[:200]}")
    broken = driver.execute_script(
        "return [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    problems += [f"image does not load: {src}" for src in broken]
    maths = driver.execute_script("return document.querySelectorAll('.math, div.math, span.math').length")
    rendered = driver.execute_script("return document.querySelectorAll('mjx-container').length")
    if maths and rendered < maths:
        problems.append(f"{maths} equations on the page, {rendered} rendered by MathJax")
    errors = driver.execute_script("return document.querySelectorAll('mjx-merror').length")
    if errors:
        problems.append(f"{errors} equations that MathJax could not typeset")
    return problems


def book_pages() -> list[Path]:
    """Every HTML page of the book: not Sphinx's assets (folders starting with _) nor the top-level
    index.html, which only redirects to book/index.html."""
    return [p for p in sorted(HTML.rglob("*.html"))
            if not p.relative_to(HTML).parts[0].startswith("_") and p.relative_to(HTML).as_posix() != "index.html"]


def test_every_page_loads_its_images_and_equations_with_no_console_error_and_no_network(browser, site):
    pages = book_pages()
    assert len(pages) >= 14 + 5, [p.name for p in pages]  # the chapters, the front pages, search and the index
    found = {}
    for path in pages:
        rel = path.relative_to(HTML).as_posix()
        problems = page_problems(browser, f"{site}/{rel}", site)
        if problems:
            found[rel] = problems
    assert not found, "pages that break in a browser:\n" + "\n".join(
        f"{page}:\n  " + "\n  ".join(p) for page, p in found.items())


def test_the_checker_sees_a_broken_page(browser, site):
    """The test above would fail on a page that logs an error, loads from the network, has a broken image or
    an equation MathJax cannot read: a copy of chapter 1's page with all four is reported four times over."""
    original = HTML / "notebooks" / "01-weighted-sums" / "01-weighted-sums.html"
    broken = original.with_name("broken-for-the-test.html")
    html = original.read_text(encoding="utf-8")
    html = html.replace("</body>", '<script>undefinedFunctionOfTheTest()</script>'
                                   '<img src="https://example.org/picture.png" alt="far away">'
                                   '<img src="missing-picture.png" alt="missing">'
                                   '<div class="math notranslate nohighlight">\\[\\frac{1}{\\]</div></body>', 1)
    broken.write_text(html, encoding="utf-8")
    try:
        problems = page_problems(browser, f"{site}/notebooks/01-weighted-sums/{broken.name}", site)
    finally:
        broken.unlink()
    said = "\n".join(problems)
    assert "undefinedFunctionOfTheTest" in said, said
    assert "loads from the network: https://example.org/picture.png" in said, said
    assert "image does not load" in said and "missing-picture.png" in said, said
    assert "could not typeset" in said or "rendered by MathJax" in said, said


def test_search_finds_a_term_of_chapter_10(browser, site):
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, f"{site}/search.html?q={CHAPTER_10_TERM}")
    links = WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#search-results li a')].map(a => a.href)") or None)
    assert any("10-vector-search" in href for href in links), links


def test_a_solution_toggle_opens(browser, site):
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, f"{site}/notebooks/01-weighted-sums/01-weighted-sums.html")
    toggles = browser.find_elements("css selector", "details.hide summary")
    toggles = [t for t in toggles if "Show the solution" in t.get_attribute("textContent")]
    assert toggles, "no 'Show the solution' toggle on chapter 1's page"
    details = toggles[0].find_element("xpath", "..")
    code = details.find_element("css selector", "pre")
    assert details.get_attribute("open") is None and not code.is_displayed()
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", toggles[0])
    toggles[0].click()
    WebDriverWait(browser, 10).until(lambda d: details.get_attribute("open") is not None and code.is_displayed())
    assert "def " in code.text  # the solution's code is what opens


def test_the_launch_and_download_buttons_have_well_formed_targets(browser, site):
    chapter = "notebooks/09-cost-of-attention/09-cost-of-attention"
    open_page(browser, f"{site}/{chapter}.html")
    links = browser.execute_script(
        "return [...document.querySelectorAll('.article-header-buttons a[href]')].map(a => a.href)")
    launch = [h for h in links if "mybinder.org" in h or "colab.research.google.com" in h]
    assert len(launch) == 2, links
    for href in launch:
        parts = urllib.parse.urlsplit(href)
        assert parts.scheme == "https" and parts.netloc, href
        assert f"{chapter}.ipynb" in urllib.parse.unquote(href), href
        assert "attnedu/attnedu" in href, href
    downloads = [h for h in links if h.startswith(site) and urllib.parse.urlsplit(h).path.endswith(".ipynb")]
    assert downloads, links
    with urllib.request.urlopen(downloads[0], timeout=10) as response:  # the local server, nothing remote
        notebook = json.loads(response.read())
    assert notebook["cells"] and "BEGIN HIDDEN TESTS" not in json.dumps(notebook)


@pytest.mark.parametrize("name, path", [
    ("landing", "book/index.html"),
    ("chapter-09", "notebooks/09-cost-of-attention/09-cost-of-attention.html"),
    ("search", f"search.html?q={CHAPTER_10_TERM}"),
])
def test_screenshots_of_three_pages_are_kept(browser, site, name, path):
    open_page(browser, f"{site}/{path}")
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / f"{name}.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000, "a blank page makes a tiny screenshot"
