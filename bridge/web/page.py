"""The subscribe page of a feed: the links, one-click "add to …" buttons and what to expect.

No external assets (the URL is a secret: nothing may leak it through a Referer) and no
framework: inline CSS and a few lines of script for the copy button. Everything is escaped.
The Content-Security-Policy allows exactly that script and that style by their SHA-256
hashes (no ``'unsafe-inline'``), and no framing.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from html import escape
from ipaddress import ip_address
from urllib.parse import urlsplit

from bridge.model.feed import PublishedFeed
from bridge.web.links import FeedUrls

_LABELS = {
    "conferences": "web conferences",
    "reservations": "your Scheduler bookings",
    "open_slots": "open slots you can book",
    "managed_slots": "slots of the appointment groups you manage, with who booked them",
}

_STYLE = """
body{font:16px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
main{max-width:760px;margin:40px auto;padding:32px;background:#fff;border-radius:12px;box-shadow:0 1px 4px #0002}
h1{font-size:1.6rem;margin:0 0 4px} .sub{color:#5b6474;margin:0 0 24px}
.url{display:flex;gap:8px;margin:8px 0 20px} .url input{flex:1;font:14px ui-monospace,monospace;padding:8px;border:1px solid #c9ced8;border-radius:6px}
button,.btn{font:inherit;font-size:15px;padding:9px 14px;border-radius:6px;border:1px solid #2b5fd9;background:#2b5fd9;color:#fff;cursor:pointer;text-decoration:none;display:inline-block}
.btns{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0 24px} .btn.alt{background:#fff;color:#2b5fd9}
ul{padding-left:20px} .note{background:#fff8e1;border-left:4px solid #f0b400;padding:10px 14px;border-radius:4px;color:#4a3d00}
.meta{color:#5b6474;font-size:14px}
"""

_SCRIPT = """
document.querySelectorAll('[data-copy]').forEach(function(b){b.addEventListener('click',function(){
var i=document.getElementById(b.getAttribute('data-copy'));i.select();
(navigator.clipboard?navigator.clipboard.writeText(i.value):Promise.reject()).catch(function(){document.execCommand('copy')});
b.textContent='Copied';setTimeout(function(){b.textContent='Copy'},1500);});});
"""


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


PAGE_CSP = (
    f"default-src 'none'; script-src {_csp_hash(_SCRIPT)}; style-src {_csp_hash(_STYLE)}; "
    "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _ago(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _loopback_note(https: str) -> str:
    """Google and Outlook fetch a feed from their own servers: a loopback address (the demo, or
    a daemon without ``http.public_url``) is out of their reach, so the page says so."""
    host = urlsplit(https).hostname or ""
    try:
        loopback = host == "localhost" or ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return ""
    return f"""<p class="note" id="loopback-note"><strong>This address is on this computer ({escape(host)}).</strong>
Google Calendar and Outlook fetch feeds from their own servers and cannot reach it: their buttons work once
calbridge has a public https address (<code>http.public_url</code>). Apple Calendar or Thunderbird on this
computer can subscribe now.</p>
"""


def subscribe_page(feed: PublishedFeed, urls: FeedUrls) -> str:
    contains = (
        "".join(f"<li>{escape(_LABELS.get(kind, kind))}</li>" for kind in feed.includes)
        or "<li>events</li>"
    )
    e = escape
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex,nofollow">
<title>Subscribe: {e(feed.name)}</title><style>{_STYLE}</style></head>
<body><main>
<h1>{e(feed.name)}</h1>
<p class="sub">A calendar feed from Canvas, kept up to date by calbridge.</p>
<h2>Add it to your calendar</h2>
{_loopback_note(urls.https)}<div class="btns">
<a class="btn" id="add-google" href="{e(urls.google)}" target="_blank" rel="noreferrer noopener">Add to Google Calendar</a>
<a class="btn" id="add-outlook" href="{e(urls.outlook_live)}" target="_blank" rel="noreferrer noopener">Add to Outlook.com</a>
<a class="btn alt" id="add-outlook-work" href="{e(urls.outlook_office)}" target="_blank" rel="noreferrer noopener">Add to Outlook (work or school)</a>
<a class="btn alt" id="add-apple" href="{e(urls.webcal)}">Add to Apple Calendar</a>
</div>
<p>Or copy the address and subscribe "from URL" in any calendar app:</p>
<div class="url"><input id="https-url" readonly value="{e(urls.https)}"><button data-copy="https-url">Copy</button></div>
<div class="url"><input id="webcal-url" readonly value="{e(urls.webcal)}"><button data-copy="webcal-url">Copy</button></div>
<h2>What it contains</h2>
<ul>{contains}</ul>
<p class="meta">{feed.event_count} event{"" if feed.event_count == 1 else "s"} · last refreshed {e(_ago(feed.refreshed_at))} · last changed {e(_ago(feed.last_modified))}</p>
<p class="note"><strong>Why changes show up late:</strong> subscribed calendars are refreshed by your calendar
provider, not by calbridge. Google Calendar fetches a feed only every few hours (often 12–24), Outlook every few
hours, Apple as often as you set. To see changes within minutes, ask for a CalDAV calendar instead: calbridge then
writes changes straight into your calendar.</p>
<p class="meta">Keep this page's address private: anyone with the feed address can read the calendar.</p>
</main><script>{_SCRIPT}</script></body></html>
"""


def index_page() -> str:
    return """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>calbridge</title></head>
<body><h1>calbridge</h1><p>Canvas conferences and bookings as calendar feeds. Feed addresses are private:
ask whoever runs this service for yours (<code>calbridge feeds</code>).</p></body></html>
"""
