"""The personal pages under test: a daemon's config with ``[oauth]``, and httpx as the browser
(its cookie jar keeps the session) going through Canvas's sign-in on the simulator."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import httpx

from bridge.simulator.sample import SAMPLE_CLIENT_ID, SAMPLE_CLIENT_SECRET
from tests.helpers.oauth_flow import browser_answer
from tests.helpers.sim import Sim


def write_config(
    tmp: Path, sim: Sim, port: int, key: str, *, oauth: str = "", http: str = ""
) -> Path:
    """A daemon with institution mode on and no config-file account."""
    (tmp / "state.keys").write_text(key + "\n")
    (tmp / "client.secret").write_text(SAMPLE_CLIENT_SECRET)
    path = tmp / "config.toml"
    path.write_text(f"""
[state]
url = "sqlite:///{tmp / "state.sqlite3"}"
encryption_key_file = "{tmp / "state.keys"}"
[http]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{port + 1}"
{http}
[oauth]
canvas_url = "{sim.url}"
client_id = "{SAMPLE_CLIENT_ID}"
client_secret_file = "{tmp / "client.secret"}"
{oauth}
""")
    return path


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Element]:
        found = []
        for child in self.children:
            wanted = tag is None or child.tag == tag
            for name, value in attrs.items():
                have = child.attrs.get(name.rstrip("_"), "")
                if name.rstrip("_") == "class":
                    wanted = wanted and value in have.split()
                else:
                    wanted = wanted and have == value
            if wanted:
                found.append(child)
            found += child.find_all(tag, **attrs)
        return found

    def one(self, tag: str | None = None, **attrs: str) -> Element:
        found = self.find_all(tag, **attrs)
        assert len(found) == 1, (tag, attrs, len(found))
        return found[0]

    @property
    def all_text(self) -> str:
        return " ".join([self.text, *(c.all_text for c in self.children)]).strip()

    def form_fields(self) -> dict[str, str]:
        """The hidden inputs of a form (its CSRF token)."""
        return {
            i.attrs["name"]: i.attrs.get("value", "") for i in self.find_all("input", type="hidden")
        }


_VOID = {"meta", "input", "br", "img", "link", "hr"}


class _Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.root = Element("root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in _VOID:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].text += data


def parse(html: str) -> Element:
    tree = _Tree()
    tree.feed(html)
    return tree.root


class Browser:
    """One person's browser: a cookie jar, no redirects followed by itself."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=60)

    def close(self) -> None:
        self.http.close()

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def page(self, path: str = "/me") -> Element:
        r = self.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:500])
        return parse(r.text)

    def csrf(self) -> str:
        return self.page().one("form", id="sign-out").form_fields()["csrf"]

    def post(self, path: str, data: dict[str, object], csrf: str | None = "page") -> httpx.Response:
        fields = dict(data)
        if csrf == "page":
            fields["csrf"] = self.csrf()
        elif csrf is not None:
            fields["csrf"] = csrf
        return self.http.post(path, data=fields)  # type: ignore[arg-type]

    def authorize(self, user: str, decision: str = "authorize") -> str:
        """/connect, then Canvas's authorize page answered; the callback URL Canvas sends
        the browser to (not yet opened)."""
        started = self.get("/connect")
        assert started.status_code == 302, started.text
        return browser_answer(started.headers["location"], decision, user)

    def sign_in(self, user: str) -> Element:
        done = self.http.get(self.authorize(user))
        assert done.status_code == 303 and done.headers["location"] == "/me", done.text[:500]
        return self.page()


def feed_url(page: Element, feed_db_id: int | None = None) -> str:
    sections = page.find_all("section", class_="feed")
    section = sections[0] if feed_db_id is None else page.one("section", id=f"feed-{feed_db_id}")
    assert sections
    return section.one("a", class_="ics-url").attrs["href"]


def feed_db_id(page: Element) -> int:
    section = page.find_all("section", class_="feed")[0]
    match = re.fullmatch(r"feed-(\d+)", section.attrs["id"])
    assert match
    return int(match[1])
