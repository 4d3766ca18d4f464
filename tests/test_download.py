"""The NIV2 downloader against a loopback HTTP server serving the local natinst folder."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest

from optiml.tools import download

pytestmark = pytest.mark.data
TASKS = [
    "task1557_jfleg_answer_generation",
    "task827_copa_commonsense_reasoning",
    "task003_mctaco_question_generation_event_duration",
]


class FlakyHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files, but answers 503 to the first request of every path in `flaky`."""

    flaky: set[str] = set()
    seen: set[str] = set()

    def do_GET(self):  # noqa: N802 (http.server API)
        if self.path in self.flaky and self.path not in self.seen:
            self.seen.add(self.path)
            self.send_error(503, "try again")
            return
        super().do_GET()

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def server(data_dir):
    handler = functools.partial(FlakyHandler, directory=str(data_dir / "natinst"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/tasks/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def manifest(data_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("manifest") / "mirror.tsv"
    assert download.write_manifest(data_dir / "natinst" / "tasks", path) == 1461
    return path


def test_downloads_missing_files_verified_and_keeps_present_ones(
    server, manifest, data_dir, tmp_path
):
    (tmp_path / f"{TASKS[0]}.json").write_text("{}")  # already present: kept untouched
    FlakyHandler.flaky = {f"/tasks/{TASKS[1]}.json"}  # first request fails: retried
    report = download.download_tasks(
        tmp_path, TASKS, base_url=server, manifest=manifest, backoff=0, progress=True
    )
    assert report.present == [TASKS[0]] and sorted(report.downloaded) == sorted(TASKS[1:])
    assert report.failed == {}
    for task in TASKS[1:]:
        assert (tmp_path / f"{task}.json").read_bytes() == (
            data_dir / "natinst" / "tasks" / f"{task}.json"
        ).read_bytes()
    assert (tmp_path / f"{TASKS[0]}.json").read_text() == "{}"
    assert not list(tmp_path.glob(".*.part"))


def test_checksum_mismatch_and_missing_file_fail_by_name(server, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text(f"task_id\tsize\tsha256\tgit_blob\n{TASKS[1]}\t\t{'0' * 64}\t\n"
                   f"task001_quoref_question_generation\t\t\t{'1' * 40}\n")  # fmt: skip
    dest = tmp_path / "dest"
    report = download.download_tasks(
        dest, None, base_url=server, manifest=bad, retries=1, backoff=0, progress=False
    )
    assert report.downloaded == []
    assert "ChecksumError" in report.failed[TASKS[1]] and "sha256" in report.failed[TASKS[1]]
    assert "404" in report.failed["task001_quoref_question_generation"]  # absent upstream here
    assert list(dest.iterdir()) == []


def test_git_blob_checksums_of_the_committed_manifest():
    assert download.git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    entries = download.read_manifest()
    assert len(entries) == 1613 and all(e.git_blob for e in entries.values())
    entry = download.ManifestEntry("t", git_blob=download.git_blob_sha1(b"{}"))
    download.verify(entry, b"{}")
    with pytest.raises(download.ChecksumError, match="t: git blob"):
        download.verify(entry, b"{ }")


def test_command_line(server, manifest, tmp_path, capsys):
    code = download.main(["--dest", str(tmp_path), "--base-url", server, "--manifest",
                          str(manifest), "--tasks", TASKS[2], "--retries", "0"])  # fmt: skip
    assert code == 0 and "downloaded 1, already present 0, failed 0" in capsys.readouterr().out
