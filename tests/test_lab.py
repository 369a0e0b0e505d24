"""The learner's JupyterLab in a real browser: `make lab`'s configuration (jupyter/learner) on a
released chapter, opened in headless Chromium.

One Lab server is started on a free port of 127.0.0.1 with a token, on a student copy of
chapter 1 made as `make lab` makes it (and, for the explorer, the chapter's source, so that
"Run All" runs every cell). The page must show the chapter's markdown rendered by
jupyterlab-myst, with no raw MyST (roles, directives, section labels) left, no news pop-up, and
the learner's toolbar: nbgrader's Validate button, none of the instructor's tools. Then the same
server is asked for the page with jupyterlab-myst switched off (Lab reads its page configuration
at every page load), and the same check must see the raw MyST: the check can fail. Last,
chapter 1's explorer runs live: its slider moves and its figure is redrawn.

Lab's own files (settings, workspaces, runtime) go to a temporary folder, removed afterwards.
Without Chromium and ChromeDriver the tests skip and say how to install them."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from attnedu import grading
from attnedu.store.cleanup import make_folder
from conftest import REPO, browser  # noqa: F401 (browser: a fixture, one Chromium per module)

pytestmark = pytest.mark.timeout(300)

LEARNER = REPO / "jupyter" / "learner"
CHAPTER = "01-weighted-sums"
TOKEN = "attnedu-test-token"

#: What MyST source looks like when nothing has rendered it, in a rendered page's text (plain
#: Markdown turns a role's backticks into code, so "{term}`x`" reads "{term}x") or its HTML (a
#: directive's fence becomes a code block of language "{note}").
RAW_MYST = {
    "a role": re.compile(r"\{(term|cite|cite:p|cite:t|ref|doc|numref|eq)\}"),
    "a section label": re.compile(r"\(ch\d\d-[a-z0-9-]+\)="),
    "a directive": re.compile(r"(```|:::)\{[a-z-]+\}|language-\{[a-z-]+\}"),
}


def raw_myst(text: str) -> list[str]:
    """The kinds of raw MyST in ``text``, each with its first occurrence."""
    return [f"{kind}: {m.group(0)!r}" for kind, pattern in RAW_MYST.items() if (m := pattern.search(text))]


def test_the_raw_myst_detector_sees_each_kind():
    source = "A {term}convex combination.\n(ch01-an-average)=\n## Title\n<code class=\"language-{note}\">"
    assert [line.split(":")[0] for line in raw_myst(source)] == ["a role", "a section label", "a directive"]
    assert raw_myst("A convex combination, see hinton2015. Math: {n} and {softmax}(x). Code: `x = 1`.") == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab():
    """A Lab server with the learner's configuration on a student copy of chapter 1; yields
    (base URL, the configuration folder it reads, the folder it serves)."""
    tmp = make_folder("lab")  # /tmp/attnedu-lab-*, marked as this process's (tests/test_cleanup.py)
    try:
        course = tmp / "course"
        (course / "notebooks").mkdir(parents=True)
        shutil.copytree(REPO / "notebooks" / CHAPTER, course / "notebooks" / CHAPTER)
        shutil.copy(REPO / "nbgrader_config.py", course)
        grading.workspace(course, course / "my-work")  # what `make lab` does first
        config = tmp / "config"
        shutil.copytree(LEARNER, config)  # a copy: the test changes its page configuration
        page = config / "labconfig" / "page_config.json"  # and lets the test run Lab's commands
        page.write_text(json.dumps({**json.loads(page.read_text()), "exposeAppInBrowser": True}))
        port = free_port()
        # draw every cell, not only those in view (Lab's default windowing), so the whole chapter is checked
        tracker = tmp / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
        tracker.parent.mkdir(parents=True)
        tracker.write_text('{"windowingMode": "none"}')
        env = {k: v for k, v in os.environ.items() if k != "ATTNEDU_STATIC_OUTPUTS"}  # a learner's Lab: live
        env = {**env, "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
               "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces")}
        command = [str(Path(sys.executable).with_name("jupyter")), "lab", "--no-browser", f"--port={port}",
                   "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}", "--ServerApp.port_retries=0",
                   f"--ServerApp.root_dir={course / 'my-work'}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")
        log = open(tmp / "lab.log", "w")
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=course)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while True:
                try:
                    urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=5)
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        log.flush()
                        pytest.fail("JupyterLab did not start:\n" + (tmp / "lab.log").read_text()[-3000:])
                    time.sleep(0.5)
            yield base, config, course / "my-work"
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


RENDERED = ".jp-Notebook .jp-MarkdownCell .myst, .jp-Notebook .jp-MarkdownCell .jp-MarkdownOutput"


def open_chapter(driver, base: str, n_markdown: int) -> str:
    """Open the learner's copy of chapter 1, wait until Lab has rendered all its ``n_markdown``
    markdown cells (by jupyterlab-myst, or by Lab's own Markdown renderer), and return their
    rendered text (not the cells' hidden editors, which hold the source)."""
    driver.get(f"{base}/lab/tree/{CHAPTER}/{CHAPTER}.ipynb?token={TOKEN}")
    deadline = time.monotonic() + 90
    while driver.execute_script(f"return document.querySelectorAll('{RENDERED}').length") < n_markdown:
        assert time.monotonic() < deadline, "Lab did not render the chapter's markdown cells within 90 s"
        time.sleep(0.5)
    time.sleep(2)  # let the renderers finish (MyST renders asynchronously)
    # The text outside code (a chapter may show MyST's syntax as an example, in code), and the
    # languages of code blocks (an unrendered directive's fence becomes a block of language "{note}").
    return driver.execute_script(f"""
        return [...document.querySelectorAll('{RENDERED}')].map(cell => {{
            const copy = cell.cloneNode(true);
            const fences = [...copy.querySelectorAll('code[class*="language-"]')].map(c => c.className);
            copy.querySelectorAll('code, pre').forEach(c => c.remove());
            return copy.textContent + '\\n' + fences.join(' ');
        }}).join('\\n')""")


def markdown_cells() -> int:
    nb = json.loads((REPO / "notebooks" / CHAPTER / f"{CHAPTER}.ipynb").read_text(encoding="utf-8"))
    return sum(c["cell_type"] == "markdown" for c in nb["cells"])


def page_config(config: Path, disabled: dict) -> None:
    path = config / "labconfig" / "page_config.json"
    data = json.loads(path.read_text())
    data["disabledExtensions"] = {**data["disabledExtensions"], **disabled}
    path.write_text(json.dumps(data))


def test_the_learners_lab_renders_the_chapter_with_no_raw_myst_no_popup_and_the_learners_toolbar(browser, lab):
    base, _, _ = lab
    text = open_chapter(browser, base, markdown_cells())
    assert "Weighted" in text  # the chapter is there
    assert raw_myst(text) == [], f"Lab shows raw MyST: {raw_myst(text)}"
    body = browser.execute_script("return document.body.textContent")
    assert "Jupyter news" not in body, "the news pop-up is shown"
    toolbar = browser.execute_script(
        "return [...document.querySelectorAll('.jp-NotebookPanel-toolbar .jp-ToolbarButtonComponent, "
        ".jp-NotebookPanel-toolbar button')].map(b => (b.textContent + ' ' + (b.title || '')).trim())")
    assert any("Validate" in b for b in toolbar), f"no Validate button in the toolbar: {toolbar}"
    menus = browser.execute_script("return [...document.querySelectorAll('.lm-MenuBar-itemLabel')].map(m => m.textContent)")
    assert "Nbgrader" not in menus, f"the instructor's Nbgrader menu is shown: {menus}"
    for tool in ("Create Assignment", "Formgrader", "Manage Assignments"):
        assert tool not in body, f"the instructor's tool {tool!r} is shown to learners"
    shots = REPO / "_build" / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shots / "lab-chapter-1.png"))


def test_without_jupyterlab_myst_the_same_check_sees_raw_myst(browser, lab):
    base, config, _ = lab
    page_config(config, {"jupyterlab-myst": True})
    try:
        text = open_chapter(browser, base, markdown_cells())
    finally:
        page_config(config, {"jupyterlab-myst": False})
    assert raw_myst(text), "with jupyterlab-myst off, the chapter's MyST should show raw"


def test_an_explorer_redraws_in_lab_when_its_slider_moves(browser, lab):
    """Chapter 1's explorer, live: run the chapter (its source, so that every cell runs), find the
    slider of the kernel width, move it, and see the figure change. A screenshot is kept."""
    base, _, root = lab
    (root / "source").mkdir(exist_ok=True)
    shutil.copy(REPO / "notebooks" / CHAPTER / f"{CHAPTER}.ipynb", root / "source" / f"{CHAPTER}.ipynb")
    browser.get(f"{base}/lab/tree/source/{CHAPTER}.ipynb?token={TOKEN}")
    wait_for(browser, "return document.querySelectorAll('.jp-Notebook .jp-Cell').length", bool, 90)
    # run-all-cells acts on the current notebook: wait for this one's kernel to be idle, then make it
    # the current one (without that it acted on nothing once, on a loaded machine)
    wait_for(browser, KERNEL_STATUS, lambda status: status == "idle", 120)
    browser.execute_script(f"window.jupyterapp.shell.activateById(({SOURCE_PANEL}).id)")
    run_command(browser, "notebook:run-all-cells")
    try:
        wait_for(browser, "return document.querySelectorAll('.jp-OutputArea .widget-slider').length", bool, 120)
    except AssertionError as error:  # say what the notebook shows: its kernel, how far it ran, its errors
        seen = browser.execute_script(
            "return {kernel: (" + KERNEL_STATUS.removeprefix("return ") + "), "
            "ran: [...document.querySelectorAll('.jp-InputPrompt')].filter(p => /\\d/.test(p.textContent)).length, "
            "errors: [...document.querySelectorAll('[data-mime-type=\"application/vnd.jupyter.stderr\"]')]"
            ".map(e => e.textContent.slice(0, 300))}")
        raise AssertionError(f"{error}; the notebook shows {seen}") from None
    image = "return [...document.querySelectorAll('.jp-OutputArea .widget-output img')].map(i => i.src).join()"
    wait_for(browser, image, lambda src: bool(src))
    before = browser.execute_script(image)
    readout = "return document.querySelector('.jp-OutputArea .widget-slider .widget-readout').textContent"
    assert browser.execute_script(readout).strip() == "0.1"  # the first static setting
    browser.execute_script("document.querySelector('.jp-OutputArea .widget-slider').scrollIntoView({block: 'center'})")
    handle = browser.find_element("css selector", ".jp-OutputArea .widget-slider .noUi-handle")
    handle.click()
    for _ in range(3):
        handle.send_keys("\ue014")  # the right arrow key: three steps along the slider
    wait_for(browser, readout, lambda text: text.strip() == "0.5")
    wait_for(browser, image, lambda src: src and src != before)
    shots = REPO / "_build" / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shots / "lab-explorer-chapter-1.png"))


#: The source notebook's panel in Lab (an earlier test's student copy may be open beside it), and
#: its kernel's status ("starting", "busy", "idle"...) or null.
SOURCE_PANEL = (f"[...window.jupyterapp.shell.widgets('main')]"
                f".find(w => w.context && w.context.path === 'source/{CHAPTER}.ipynb')")
KERNEL_STATUS = ("return (() => { const w = " + SOURCE_PANEL + "; "
                 "const k = w && w.sessionContext.session && w.sessionContext.session.kernel; "
                 "return k ? k.status : null; })()")


def run_command(driver, command: str) -> None:
    """Run one of Lab's commands, as its menu item or shortcut would."""
    driver.execute_script("return window.jupyterapp.commands.execute(arguments[0])", command)


def wait_for(driver, script: str, ok, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while True:
        value = driver.execute_script(script)
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"waited {seconds} s for {script!r}; last value {value!r}"
        time.sleep(0.5)
