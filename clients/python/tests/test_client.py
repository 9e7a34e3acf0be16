"""The Python client against a real 3-node cluster (see conftest.py)."""

import subprocess
import urllib.request

import pytest

import peerbatch
from peerbatch import Client
from peerbatch.client import ROUTES

from conftest import Cluster, binary, wait_for


def test_a_job_given_as_a_dict_runs_across_the_mesh_and_its_logs_are_read_from_any_node(cluster):
    submitter, reader = cluster.client(2), cluster.client(0)
    job = submitter.submit(
        {
            "name": "squares",
            "tasks": [{"id": "sq-", "range": "1..=6", "command": "echo $(({index} * {index}))"}],
        }
    )
    done = reader.wait(job, timeout=120)
    assert done["state"] == "succeeded"
    assert done["succeeded"] == 6
    tasks = reader.tasks(job)
    assert sorted(t["id"] for t in tasks) == ["sq-{}".format(i) for i in range(1, 7)]
    assert all(t["state"] == "succeeded" and t["exit_code"] == 0 for t in tasks)
    assert reader.logs(job, "sq-4") == b"16\n"
    assert [j["id"] for j in reader.jobs()].count(job) == 1


def test_a_job_file_with_a_local_input_is_staged_and_its_outputs_come_back(cluster, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "words.txt").write_text("alpha\nbeta\ngamma\n")
    (work / "count.toml").write_text(
        '[[tasks]]\nid = "count"\ncommand = "wc -l < words.txt > n.txt"\n'
        'inputs = [{ path = "words.txt", source = "words.txt" }]\noutputs = ["n.txt"]\n'
    )
    c = cluster.client(1)
    job = c.submit(work / "count.toml", wait=True)
    assert c.job(job)["name"] == "count"
    out = tmp_path / "results"
    export = cluster.client(0).get(job, out)
    assert export["state"] == "done"
    assert (out / "count" / "n.txt").read_text().strip() == "3"


def test_a_file_put_on_one_node_is_got_on_another(cluster, tmp_path):
    data = bytes(range(256)) * 4096
    src = tmp_path / "data.bin"
    src.write_bytes(data)
    blob = cluster.client(0).put(src)
    assert len(blob) == 64
    cluster.client(2).get(blob, tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == data


def test_a_client_with_only_an_address_and_a_token_puts_and_gets_as_bytes(cluster, tmp_path):
    dirs = cluster.dirs
    c = Client(api=(dirs[1] / "api").read_text(), token=(dirs[1] / "token").read_text())
    assert not c.shares_files
    src = tmp_path / "note.txt"
    src.write_bytes(b"by bytes\n")
    blob = c.put(src)
    got = c.get(blob, tmp_path / "note-copy.txt")
    assert got["bytes_written"] == 9
    assert (tmp_path / "note-copy.txt").read_bytes() == b"by bytes\n"
    assert c.status()["node"] == Client(data_dir=dirs[1]).status()["node"]


def test_following_a_running_tasks_log_yields_each_line_as_it_is_written_and_ends_with_the_task(
    cluster, tmp_path
):
    c = cluster.client(0)
    go = tmp_path / "go"
    command = "echo one; while [ ! -e {} ]; do sleep 0.05; done; echo two".format(go)
    job = c.submit({"tasks": [{"id": "slow", "command": command}]})
    lines = c.logs(job, "slow", follow=True)
    assert next(lines) == b"one\n"
    assert c.tasks(job)[0]["state"] == "running", "the first line came while the task runs"
    go.touch()
    assert list(lines) == [b"two\n"]
    assert c.tasks(job)[0]["state"] == "succeeded", "the lines end when the task ends"


def test_a_node_serving_https_beyond_loopback_is_reached_with_its_fingerprint_pinned(tmp_path):
    tls = Cluster(tmp_path)
    try:
        data = tls.start("tls", "--api", "127.0.0.2:0")
        api = (data / "api").read_text().strip()
        assert api.startswith("https://127.0.0.2:"), api
        local = Client(data_dir=data)
        fingerprint = local.status()["tls_fingerprint"]
        assert fingerprint == (data / "api-tls" / "fingerprint").read_text()
        token = (data / "token").read_text()
        elsewhere = tmp_path / "elsewhere"
        remote = Client(data_dir=elsewhere, api=api, token=token, fingerprint=fingerprint)
        assert remote.status()["node"] == local.status()["node"]
        job = remote.submit({"tasks": [{"id": "t", "command": "echo over tls"}]})
        assert list(remote.logs(job, "t", follow=True)) == [b"over tls\n"]

        wrong = Client(data_dir=elsewhere, api=api, token=token, fingerprint="AB" * 32)
        with pytest.raises(peerbatch.Unreachable) as refused:
            wrong.status()
        assert "not the one trusted" in str(refused.value)
        plain = Client(data_dir=elsewhere, api=api.replace("https://", "http://"), token=token)
        with pytest.raises(peerbatch.Unreachable) as refused:
            plain.status()
        assert "HTTPS only" in str(refused.value)
    finally:
        tls.stop()


def test_a_cancelled_job_ends_cancelled_and_waiting_for_it_raises_job_failed(cluster):
    c = cluster.client(1)
    job = c.submit({"name": "long", "tasks": [{"id": "s-", "range": "1..=4", "command": "sleep 600"}]})
    assert c.cancel(job)["cancelled"] is True
    with pytest.raises(peerbatch.JobFailed) as failed:
        c.wait(job, timeout=120)
    assert failed.value.job["state"] == "cancelled"
    assert c.wait(job, check=False)["cancelled"] == 4


def test_a_failing_job_raises_job_failed_and_its_stderr_is_readable(cluster):
    c = cluster.client(2)
    job = c.submit({"tasks": [{"id": "bad", "command": "echo oops >&2; exit 3", "max_retries": 0}]})
    with pytest.raises(peerbatch.JobFailed, match="failed"):
        c.wait(job, timeout=120)
    assert c.logs(job, "bad", stderr=True) == b"oops\n"
    assert c.tasks(job)[0]["exit_code"] == 3


def test_refusals_raise_typed_errors_that_say_what_and_where(cluster, tmp_path):
    c = cluster.client(0)
    with pytest.raises(peerbatch.NotFound, match="no job"):
        c.job("no-such-job")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[tasks]]\nid = "x"\ncommand = ""\n')
    with pytest.raises(peerbatch.BadRequest, match="bad.toml:"):
        c.submit(bad)
    with pytest.raises(peerbatch.BadRequest, match="missing.txt"):
        c.submit({"tasks": [{"command": "true", "inputs": [{"path": "m", "source": "missing.txt"}]}]},
                 dir=tmp_path)
    wrong = Client(api=(cluster.dirs[0] / "api").read_text(), token="0" * 64)
    with pytest.raises(peerbatch.Unauthorized):
        wrong.jobs()
    with pytest.raises(peerbatch.Unreachable):
        Client(data_dir=tmp_path)


def test_every_route_the_client_calls_is_described_by_the_nodes_openapi_document(cluster):
    doc = cluster.client(0).openapi()
    assert doc["openapi"].startswith("3.")
    described = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    missing = [r for r in ROUTES if r not in described]
    assert not missing, "routes the client calls that the document lacks: {}".format(missing)
    job = doc["components"]["schemas"]["Job"]["properties"]
    assert {"id", "name", "state", "tasks", "succeeded", "failed"} <= set(job)


def deploy(cluster, i, name, tmp_path, command):
    """``peerbatch fn deploy`` of a one-line shell handler from node ``i``."""
    bundle = tmp_path / name
    bundle.mkdir()
    (bundle / "handler.sh").write_text(command + "\n")
    subprocess.run(
        [binary(), "--data-dir", str(cluster.dirs[i]), "fn", "deploy", name, str(bundle),
         "--command", "sh handler.sh"],
        check=True, capture_output=True,
    )


def invoke(cluster, i, name, body):
    """An HTTP call of function ``name`` on node ``i``, as curl would make it."""
    data = cluster.dirs[i]
    request = urllib.request.Request(
        "http://{}/fn/{}".format((data / "api").read_text().strip(), name), data=body,
        method="POST", headers={"Authorization": "Bearer " + (data / "token").read_text().strip()},
    )
    with urllib.request.urlopen(request) as answer:
        return answer.read()


def known(c, read):
    """``read(c)`` once node ``c`` knows what it reads (not 404)."""
    def attempt():
        try:
            return read(c) or None
        except peerbatch.NotFound:
            return None
    return wait_for("a node to hear of a function change", attempt)


def test_a_functions_key_made_on_its_owner_is_listed_elsewhere_and_only_the_owner_revokes_it(
        cluster, tmp_path):
    owner, other = cluster.client(1), cluster.client(2)
    deploy(cluster, 1, "guarded", tmp_path, "cat")
    made = owner.create_function_key("guarded", "ci")
    assert (made["name"], made["label"], len(made["key"])) == ("guarded", "ci", 43)
    keys = known(other, lambda c: c.function_keys("guarded"))
    assert [(k["label"], k["revoked_ms"]) for k in keys] == [("ci", None)]
    assert "key" not in keys[0]
    with pytest.raises(peerbatch.Conflict, match="ci"):
        owner.create_function_key("guarded", "ci")
    with pytest.raises(peerbatch.Forbidden, match="belongs to node"):
        other.revoke_function_key("guarded", "ci")

    assert owner.revoke_function_key("guarded", "ci") == {"name": "guarded", "label": "ci"}
    known(other, lambda c: c.function_keys("guarded")[0]["revoked_ms"])
    with pytest.raises(peerbatch.NotFound):
        owner.revoke_function_key("guarded", "ci")
    assert owner.create_function_key("guarded")["label"] == "default"


def test_a_functions_calls_made_on_one_node_are_read_with_their_figures_from_another(
        cluster, tmp_path):
    deploy(cluster, 0, "shout", tmp_path, "tr a-z A-Z; echo shouted >&2")
    reader = cluster.client(2)
    known(reader, lambda c: c.function_keys("shout") == [])
    for word in (b"one", b"two", b"three"):
        assert invoke(cluster, 0, "shout", word) == word.upper()

    calls = reader.function_calls("shout", limit=2)
    assert calls["name"] == "shout"
    assert calls["total"]["calls"] == 3
    assert calls["total"]["by_status"]["2xx"] == 3
    assert len(calls["calls"]) == 2
    assert all(c["status"] == 200 and "shouted" in c["stderr"] for c in calls["calls"])
    assert calls["unanswered"] == []
    figures = {f["name"]: f["total"] for f in reader.all_function_calls()["functions"]}
    assert figures["shout"]["calls"] == 3
    with pytest.raises(peerbatch.BadRequest, match="1000"):
        reader.function_calls("shout", limit=1001)
    with pytest.raises(ValueError):
        reader.function_calls("shout", limit="all")
    with pytest.raises(peerbatch.NotFound):
        reader.function_calls("no-such-function")
