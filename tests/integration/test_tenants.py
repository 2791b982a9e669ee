"""Tenant isolation: nothing of one company reaches another company's templates or lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from multiflexid.core import Core
from multiflexid.services import runtemplates
from tests.integration.conftest import dump_tables

PROBE = "775ed801-2489-4981-bc14-d8a01cba1938"
CONTRACTS = "e0e20955-d71c-4003-85e5-7d65eb9da03f"

ABRA = {
    "acme": {"ABRAFLEXI_URL": "https://acme.flexibee.example", "ABRAFLEXI_LOGIN": "acme-api",
             "ABRAFLEXI_PASSWORD": "acme-Pw-111", "ABRAFLEXI_COMPANY": "acme_sro"},
    "globex": {"ABRAFLEXI_URL": "https://globex.flexibee.example",
               "ABRAFLEXI_LOGIN": "globex-api", "ABRAFLEXI_PASSWORD": "globex-Pw-222",
               "ABRAFLEXI_COMPANY": "globex_as"},
}


@pytest.fixture
def db_url(reused_db_url: str) -> str:
    """This module's tests share one database per backend, emptied before each test."""
    return reused_db_url


@pytest.fixture
def tenants(mfcli, examples_dir: Path) -> dict[str, dict[str, int]]:
    """acme and globex, each with an AbraFlexi credential and a contracts template using it."""
    assert mfcli("application", "import-json", "--file", str(examples_dir)).code == 0
    assert mfcli("credential-type", "import-json", "--file",
                 str(examples_dir / "credential-types")).code == 0
    out: dict[str, dict[str, int]] = {}
    for slug in ("acme", "globex"):
        company = mfcli("company", "create", "--name", slug.title(), "--slug", slug,
                        "--format", "json").json
        fields = [a for k, v in ABRA[slug].items() for a in ("--field", f"{k}={v}")]
        cred = mfcli("credential", "create", "--company", slug, "--type", "AbraFlexi",
                     "--name", "abraflexi", *fields, "--format", "json")
        assert cred.code == 0, cred.err
        rt = mfcli("runtemplate", "create", "--app", CONTRACTS, "--company", slug, "--name",
                   "contracts", "--credential", str(cred.json["id"]), "--format", "json")
        assert rt.code == 0, rt.err
        out[slug] = {"company": company["id"], "credential": cred.json["id"],
                     "template": rt.json["id"]}
    return out


def test_another_companys_credential_is_refused_and_nothing_written(
    mfcli, mf_env, tenants: dict[str, dict[str, int]]
) -> None:
    acme, globex = tenants["acme"], tenants["globex"]
    before = dump_tables(mf_env.db_url)
    r = mfcli("runtemplate", "assign-credential", "--id", str(acme["template"]),
              "--credential", str(globex["credential"]))
    assert r.code == 1
    assert r.out == ""
    assert r.err == (
        f"multiflexi-cli: error: credential {globex['credential']} belongs to company globex; "
        f"run template {acme['template']} is of company acme: refused\n")
    r = mfcli("--format", "json", "runtemplate", "create", "--app", PROBE, "--company", "acme",
              "--name", "sneaky", "--credential", str(acme["credential"]), "--credential",
              str(globex["credential"]))
    assert r.code == 1
    assert r.json["error"] == {
        "name": "conflict",
        "message": f"credential {globex['credential']} belongs to company globex; the new run "
                   "template 'sneaky' is of company acme: refused"}
    assert dump_tables(mf_env.db_url) == before


def test_lists_filtered_by_company_show_only_that_company(
    mfcli, tenants: dict[str, dict[str, int]]
) -> None:
    for slug, other in (("acme", "globex"), ("globex", "acme")):
        creds = mfcli("credential", "list", "--company", slug, "--format", "json").json
        assert [(c["id"], c["company"]) for c in creds] == [(tenants[slug]["credential"], slug)]
        text = mfcli("credential", "list", "--company", slug).out
        assert slug in text and other not in text
        tpls = mfcli("runtemplate", "list", "--company", slug, "--format", "json").json
        assert [t["id"] for t in tpls] == [tenants[slug]["template"]]

    jobs = {}
    for slug in ("acme", "globex", "acme"):
        r = mfcli("runtemplate", "run", "--id", str(tenants[slug]["template"]), "--format",
                  "json")
        jobs.setdefault(slug, []).append(r.json["id"])
    for slug in ("acme", "globex"):
        listed = mfcli("job", "list", "--company", slug, "--format", "json").json
        assert sorted(j["id"] for j in listed) == sorted(jobs[slug])
        assert {j["company_id"] for j in listed} == {tenants[slug]["company"]}
        assert {j["company"] for j in listed} == {slug}
    # By id as well as by slug.
    listed = mfcli("job", "list", "--company", str(tenants["globex"]["company"]), "--format",
                   "json").json
    assert [j["id"] for j in listed] == jobs["globex"]


def test_a_templates_environment_holds_only_its_own_companys_values(
    mfcli, core: Core, tenants: dict[str, dict[str, int]]
) -> None:
    for slug, other in (("acme", "globex"), ("globex", "acme")):
        tpl = str(tenants[slug]["template"])
        doc = mfcli("runtemplate", "env", "--id", tpl, "--reveal", "--format", "json").json
        env = doc["environment"]
        for key, value in ABRA[slug].items():
            assert env[key] == value
        assert env["MULTIFLEXI_COMPANY_CODE"] == slug
        assert env["MULTIFLEXI_COMPANY_ID"] == str(tenants[slug]["company"])
        assert env["RESULT_FILE"] == f"contracts_{ABRA[slug]['ABRAFLEXI_COMPANY']}.json"
        text = mfcli("runtemplate", "env", "--id", tpl, "--explain", "--reveal").out
        for value in ABRA[other].values():
            assert value not in text
        assert other not in text

        # The environment a job gets (resolved by the same function the executor uses).
        with core.db.read_session() as s:
            rt = runtemplates.get_runtemplate(s, tpl)
            resolved = runtemplates.resolve_env(s, rt, core.box, job_id=1, job_dir="/tmp/j1")
        values = resolved.environ()
        assert values["ABRAFLEXI_PASSWORD"] == ABRA[slug]["ABRAFLEXI_PASSWORD"]
        assert not set(ABRA[other].values()) & set(values.values())
        assert resolved.secrets() == [ABRA[slug]["ABRAFLEXI_PASSWORD"]]
