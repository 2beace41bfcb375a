"""Contract of the GitHub opener against a local server speaking GitHub's REST shapes.

The server keeps branches, files and pull requests in memory and records every request,
so the test checks what PyGithub sends (method, path, JSON body), not just the outcome.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from monitoring.pull_requests import Change, GitHubOpener

pytestmark = pytest.mark.integration
OWNER, NAME = "acme", "models"
REPO_PATH = f"/repos/{OWNER}/{NAME}"
BRANCH = "monitor/fraud-detection/retrain"
POINTER = "data/fraud-detection/snapshot.parquet.dvc"


class FakeGitHub:
    """In-memory repository state + a request log."""

    def __init__(self) -> None:
        self.base = ""
        self.refs = {"main": "a" * 40}
        self.files: dict[tuple[str, str], str] = {("main", POINTER): "outs:\n- md5: old\n"}
        self.pulls: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []
        self.authorizations: list[str] = []
        self._shas = (hashlib.sha1(str(i).encode()).hexdigest() for i in itertools.count(1))

    def sha(self) -> str:
        return next(self._shas)

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        self.requests.append((method, path, query, body))
        repo_url = f"{self.base}{REPO_PATH}"
        if path == REPO_PATH and method == "GET":
            return 200, {
                "id": 1,
                "name": NAME,
                "full_name": f"{OWNER}/{NAME}",
                "default_branch": "main",
                "owner": {"login": OWNER},
                "url": repo_url,
                "html_url": f"https://github.example/{OWNER}/{NAME}",
            }
        rest = path.removeprefix(REPO_PATH)
        if rest.startswith("/git/ref/heads/") and method == "GET":
            branch = unquote(rest.removeprefix("/git/ref/heads/"))
            if branch not in self.refs:
                return 404, {"message": "Not Found"}
            return 200, self._ref(branch)
        if rest == "/git/refs" and method == "POST":
            branch = body["ref"].removeprefix("refs/heads/")
            self.refs[branch] = body["sha"]
            for (ref, file_path), text in list(self.files.items()):
                if ref == "main":
                    self.files[(branch, file_path)] = text
            return 201, self._ref(branch)
        if rest.startswith("/contents/"):
            return self._contents(method, unquote(rest.removeprefix("/contents/")), query, body)
        if rest == "/pulls" and method == "GET":
            head = query["head"][0].split(":", 1)[1]
            state = query["state"][0]
            return 200, [p for p in self.pulls if p["head"]["ref"] == head and p["state"] == state]
        if rest == "/pulls" and method == "POST":
            number = len(self.pulls) + 1
            pull = {
                "number": number,
                "state": "open",
                "title": body["title"],
                "body": body["body"],
                "head": {"ref": body["head"]},
                "base": {"ref": body["base"]},
                "url": f"{repo_url}/pulls/{number}",
                "html_url": f"https://github.example/{OWNER}/{NAME}/pull/{number}",
            }
            self.pulls.append(pull)
            return 201, pull
        if rest.startswith("/pulls/") and method == "PATCH":
            pull = self.pulls[int(rest.removeprefix("/pulls/")) - 1]
            pull.update({k: body[k] for k in ("title", "body") if k in body})
            return 200, pull
        return 404, {"message": f"no route {method} {path}"}

    def _ref(self, branch: str) -> dict[str, Any]:
        return {
            "ref": f"refs/heads/{branch}",
            "url": f"{self.base}{REPO_PATH}/git/refs/heads/{branch}",
            "object": {"sha": self.refs[branch], "type": "commit", "url": ""},
        }

    def _contents(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        if method == "GET":
            key = (query["ref"][0], path)
            if key not in self.files:
                return 404, {"message": "Not Found"}
            return 200, self._file(path, self.files[key])
        if method == "PUT":
            key = (body["branch"], path)
            if key in self.files and body.get("sha") != self._blob(self.files[key]):
                return 409, {"message": "sha does not match"}
            self.files[key] = base64.b64decode(body["content"]).decode()
            commit = self.sha()
            self.refs[body["branch"]] = commit
            status = 200 if "sha" in body else 201
            return status, {"content": self._file(path, self.files[key]), "commit": {"sha": commit}}
        return 405, {"message": "method not allowed"}

    @staticmethod
    def _blob(text: str) -> str:
        return hashlib.sha1(text.encode()).hexdigest()

    def _file(self, path: str, text: str) -> dict[str, Any]:
        return {
            "type": "file",
            "encoding": "base64",
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": self._blob(text),
            "content": base64.b64encode(text.encode()).decode(),
            "url": f"{self.base}{REPO_PATH}/contents/{path}",
        }


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    state = FakeGitHub()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            state.authorizations.append(self.headers.get("Authorization", ""))
            status, payload = state.handle(self.command, parts.path, parse_qs(parts.query), body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def change(md5: str, body: str) -> Change:
    return Change(
        branch=BRANCH,
        title="Retrain fraud-detection: input drift",
        body=body,
        files={POINTER: f"outs:\n- md5: {md5}\n"},
        commit_message=f"Retrain fraud-detection on snapshot {md5}",
    )


def calls(state: FakeGitHub) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _, _ in state.requests]


def test_first_call_creates_branch_commits_file_and_opens_pull_request(github):
    opener = GitHubOpener("token-123", f"{OWNER}/{NAME}", github.base, throttle=False)
    result = opener.open_or_update(change("new", "drift table"))

    assert calls(github) == [
        ("GET", REPO_PATH),
        ("GET", f"{REPO_PATH}/git/ref/heads/{BRANCH}"),
        ("GET", f"{REPO_PATH}/git/ref/heads/main"),
        ("POST", f"{REPO_PATH}/git/refs"),
        ("GET", f"{REPO_PATH}/contents/{POINTER}"),
        ("PUT", f"{REPO_PATH}/contents/{POINTER}"),
        ("GET", f"{REPO_PATH}/pulls"),
        ("POST", f"{REPO_PATH}/pulls"),
    ]
    by_call = {(m, p): (q, b) for m, p, q, b in github.requests}
    assert by_call[("POST", f"{REPO_PATH}/git/refs")][1] == {
        "ref": f"refs/heads/{BRANCH}",
        "sha": "a" * 40,
    }
    assert by_call[("GET", f"{REPO_PATH}/contents/{POINTER}")][0] == {"ref": [BRANCH]}
    put = by_call[("PUT", f"{REPO_PATH}/contents/{POINTER}")][1]
    assert put["branch"] == BRANCH
    assert put["message"] == "Retrain fraud-detection on snapshot new"
    assert base64.b64decode(put["content"]).decode() == "outs:\n- md5: new\n"
    assert put["sha"] == FakeGitHub._blob("outs:\n- md5: old\n")  # update names the blob
    query = by_call[("GET", f"{REPO_PATH}/pulls")][0]
    assert query == {"state": ["open"], "head": [f"{OWNER}:{BRANCH}"], "base": ["main"]}
    assert by_call[("POST", f"{REPO_PATH}/pulls")][1] == {
        "title": "Retrain fraud-detection: input drift",
        "body": "drift table",
        "head": BRANCH,
        "base": "main",
    }
    assert result.created and result.committed and result.number == 1
    assert result.url == f"https://github.example/{OWNER}/{NAME}/pull/1"
    assert result.commit == github.refs[BRANCH]
    assert github.files[("main", POINTER)] == "outs:\n- md5: old\n"  # base untouched
    assert github.authorizations and all(a == "token token-123" for a in github.authorizations)


def test_second_call_patches_the_open_pull_request_instead_of_opening_another(github):
    opener = GitHubOpener("token-123", f"{OWNER}/{NAME}", github.base, throttle=False)
    opener.open_or_update(change("new", "run 1"))
    github.requests.clear()

    same = opener.open_or_update(change("new", "run 2"))
    assert calls(github) == [
        ("GET", REPO_PATH),
        ("GET", f"{REPO_PATH}/git/ref/heads/{BRANCH}"),
        ("GET", f"{REPO_PATH}/contents/{POINTER}"),
        ("GET", f"{REPO_PATH}/pulls"),
        ("PATCH", f"{REPO_PATH}/pulls/1"),
    ]  # no new branch, no commit (same content), no POST /pulls
    assert github.requests[-1][3] == {
        "title": "Retrain fraud-detection: input drift",
        "body": "run 2",
    }
    assert not same.created and not same.committed and same.number == 1

    github.requests.clear()
    changed = opener.open_or_update(change("newer", "run 3"))
    methods = calls(github)
    assert ("PUT", f"{REPO_PATH}/contents/{POINTER}") in methods
    assert ("POST", f"{REPO_PATH}/pulls") not in methods
    assert ("PATCH", f"{REPO_PATH}/pulls/1") in methods
    assert changed.committed and not changed.created
    assert len(github.pulls) == 1 and github.pulls[0]["body"] == "run 3"
    assert github.files[(BRANCH, POINTER)] == "outs:\n- md5: newer\n"


def test_new_file_is_created_without_a_sha(github):
    opener = GitHubOpener("token-123", f"{OWNER}/{NAME}", github.base, throttle=False)
    new = Change(BRANCH, "t", "b", {"infra/new.yaml": "a: 1\n"}, "add file")
    opener.open_or_update(new)
    put = next(b for m, p, _, b in github.requests if m == "PUT")
    assert "sha" not in put and put["branch"] == BRANCH
    assert github.files[(BRANCH, "infra/new.yaml")] == "a: 1\n"
