"""A first end-to-end pass through the CLI on both databases."""

from __future__ import annotations

from pathlib import Path


def test_import_examples_and_queue_a_job(mfcli, examples_dir: Path) -> None:
    r = mfcli("application:import-json", "--file", str(examples_dir))
    assert r.code == 0, r.err
    assert "12 imported, 0 failed" in r.out
    assert mfcli("company", "create", "--name", "Acme", "--slug", "acme").code == 0
    r = mfcli("run-template", "create", "--app", "775ed801-2489-4981-bc14-d8a01cba1938",
              "--company", "acme", "--name", "probe", "--format", "json")
    assert r.code == 0, r.err
    rt = r.json
    r = mfcli("runtemplate", "run", "--id", str(rt["id"]), "--format", "json")
    assert r.code == 0, r.err
    assert r.json["state"] == "scheduled"
    jobs = mfcli("--format", "json", "job", "list").json
    assert [j["id"] for j in jobs] == [r.json["id"]]
