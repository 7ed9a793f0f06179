"""The README's form snippet in real headless Chromium: submitted to `leadflow api`, redirected to its return URL,
and the lead goes through intake and qualification to a rep alert in the outbox."""

from __future__ import annotations

import re
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flows.intake import lead_intake
from leadflow.crm import reference
from leadflow.crm.api_keys import create_key
from leadflow.crm.inbox import pending_count, rep_alert_queued
from tests.api_server import ROOT, running_api
from tests.e2e.test_report_browser import chromium

EMAIL = "vp.sales@bigcorp.example"
# The README's placeholders, replaced by this test's servers and key.
ACTION, KEY, THANKS = "https://leads.example.com/v1/leads", "lfk_your_publishable_key", \
    "https://www.example.com/thanks.html"
FILL = f"""
<script>
  const form = document.forms[0];
  const values = {{email: "{EMAIL}", first_name: "Pat", last_name: "Lee", company: "BigCorp",
                  job_title: "VP Sales", company_size: "1000-5000", country: "US"}};
  for (const [name, value] of Object.entries(values)) form.elements[name].value = value;
  form.elements.demo_requested.checked = true;
  form.requestSubmit();
</script>
"""


def readme_form() -> str:
    """The copy-paste form snippet as the README documents it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("**A copy-paste form**"):]
    return re.search(r"```html\n(.*?)```", section, re.S).group(1)


class _Pages(SimpleHTTPRequestHandler):
    """Serves the test's pages and remembers which were asked for."""

    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        super().do_GET()

    def log_message(self, *_: object) -> None:
        pass


def _site(folder: Path) -> tuple[ThreadingHTTPServer, list[str]]:
    seen: list[str] = []
    handler = type("Pages", (_Pages,), {"seen": seen})
    site = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(folder)))
    threading.Thread(target=site.serve_forever, daemon=True).start()
    return site, seen


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("crm", ["sqlite"], indirect=True)
def test_the_documented_form_posts_redirects_and_the_lead_reaches_a_rep_alert(crm, tmp_path):
    from prefect.settings import PREFECT_API_URL

    browser = chromium()
    reference.load_sales_reps(crm, reference.DATA_DIR / "sales_reps.csv")
    reference.load_accounts(crm, reference.DATA_DIR / "accounts.csv")
    pages = tmp_path / "site"
    pages.mkdir()
    site, seen = _site(pages)
    origin = f"http://127.0.0.1:{site.server_address[1]}"
    key, _ = create_key(crm, "website", default_channel="web_form", allowed_origins=[origin])
    try:
        with running_api(crm.url, tmp_path, {"PREFECT_API_URL": PREFECT_API_URL.value()}) as api:
            snippet = (readme_form().replace(ACTION, f"{api.url}/v1/leads").replace(KEY, key.token)
                       .replace(THANKS, f"{origin}/thanks.html"))
            (pages / "contact.html").write_text(f"<!doctype html><html><body>{snippet}{FILL}</body></html>",
                                                encoding="utf-8")
            (pages / "thanks.html").write_text("<!doctype html><html><body><h1>Thank you, we will be in touch"
                                               "</h1></body></html>", encoding="utf-8")
            command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                       f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=30000", "--dump-dom",
                       f"{origin}/contact.html"]
            shown = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
            log = api.log_tail()
        assert "Thank you, we will be in touch" in shown.stdout, (shown.stderr[-1500:], log)
        assert seen[:2] == ["/contact.html", "/thanks.html"]
        assert '"status": 303' in log
        # The continuous-intake run takes the row; its qualification subflow queues the rep alert.
        assert pending_count(crm) == 1
        summary = lead_intake()
        assert summary["submissions_new"] == 1 and pending_count(crm) == 0
        assert rep_alert_queued(crm, EMAIL)
    finally:
        site.shutdown()
