"""Secret values are encrypted at rest: a dump of the database holds none of them in clear."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url

from multiflexid.core import Core
from multiflexid.services.jobs import decrypt_overrides, get_job
from tests.support import sqlitedump

PROBE = "775ed801-2489-4981-bc14-d8a01cba1938"
CONTRACTS = "e0e20955-d71c-4003-85e5-7d65eb9da03f"

# Every secret the test stores, each in a different way.
SECRETS = {
    "credential password field": "Cred-Abra-Pw-5150",
    "credential secret field": "O365-Client-Secret-8086",
    "credential password field (O365)": "O365-User-Pw-6502",
    "template override at create": "Tpl-Create-Pw-2600",
    "template override by set-config": "Tpl-SetCfg-Pw-1984",
    "updated credential password": "Cred-Updated-Pw-4004",
    "one-off override at run": "OneOff-Run-Pw-7777",
    "undeclared key named like a secret, set-config": "Undeclared-Pw-1111",
    "value marked --secret, set-config": "Marked-Secret-2222",
    "undeclared key named like a token, one-off": "OneOff-Token-3333",
    "value marked --secret, one-off": "OneOff-Marked-4444",
    "undeclared *_KEY at create": "Create-Api-Key-5555",
}
# Values stored in clear: finding them proves the search looks in the right place.
PLAIN = ["abra-login-visible-42", "o365-tenant-visible-43", "green-visible-44"]


@pytest.fixture
def wal_kept(mf_env, backend: str) -> Iterator[None]:
    """On SQLite, hold a connection open so the -wal file outlives each CLI run."""
    if backend != "sqlite":
        yield
        return
    conn = sqlite3.connect(str(make_url(mf_env.db_url).database))
    conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
    yield
    conn.close()


@pytest.fixture
def stored(mfcli, examples_dir: Path) -> dict[str, int]:
    """Store every kind of secret through the CLI; ids of what was made."""
    s = SECRETS
    assert mfcli("application", "import-json", "--file",
                 str(examples_dir / "probe.multiflexi.app.json"), "--file",
                 str(examples_dir / "contract_to_invoices.multiflexi.app.json")).code == 0
    assert mfcli("credential-type", "import-json", "--file",
                 str(examples_dir / "credential-types")).code == 0
    assert mfcli("company", "create", "--name", "Acme", "--slug", "acme").code == 0

    def ok(*args: str) -> int:
        r = mfcli(*args, "--format", "json")
        assert r.code == 0, r.err
        return int(r.json["id"])

    abra = ok("credential", "create", "--company", "acme", "--type", "AbraFlexi", "--name",
              "abra", "--field", "ABRAFLEXI_URL=https://abra.example", "--field",
              f"ABRAFLEXI_LOGIN={PLAIN[0]}", "--field",
              f"ABRAFLEXI_PASSWORD={s['credential password field']}",
              "--field", "ABRAFLEXI_COMPANY=acme_sro")
    ok("credential", "create", "--company", "acme", "--type", "Office365", "--name", "o365",
       "--field", f"OFFICE365_TENANT={PLAIN[1]}", "--field",
       f"OFFICE365_CLSECRET={s['credential secret field']}", "--field",
       f"OFFICE365_PASSWORD={s['credential password field (O365)']}")
    probe = ok("runtemplate", "create", "--app", PROBE, "--company", "acme", "--name", "probe",
               "--config", f"PASSWORD={s['template override at create']}",
               "--config", f"SERVICE_API_KEY={s['undeclared *_KEY at create']}")
    contracts = ok("runtemplate", "create", "--app", CONTRACTS, "--company", "acme", "--name",
                   "contracts", "--credential", str(abra))
    assert mfcli("runtemplate", "set-config", "--id", str(contracts),
                 f"ABRAFLEXI_PASSWORD={s['template override by set-config']}").code == 0
    # Replace a secret: the old one must not linger either.
    assert mfcli("credential", "create", "--company", "acme", "--type", "Probe", "--name", "p",
                 "--field", "PASSWORD=Probe-Old-Pw-3003").code == 0
    assert mfcli("credential", "update", "--id", "3", "--field",
                 f"PASSWORD={s['updated credential password']}").code == 0
    assert mfcli("runtemplate", "set-config", "--id", str(probe),
                 f"MY_DB_PASSWORD={s['undeclared key named like a secret, set-config']}",
                 "--secret", f"NOTE={s['value marked --secret, set-config']}",
                 "COLOR=green-visible-44").code == 0
    job = ok("runtemplate", "run", "--id", str(probe), "--env",
             f"PASSWORD={s['one-off override at run']}", "--env", "FORCE_EXITCODE=2",
             "--env", f"API_TOKEN={s['undeclared key named like a token, one-off']}",
             "--secret", f"EXTRA={s['value marked --secret, one-off']}")
    return {"abra": abra, "probe": probe, "contracts": contracts, "job": job}


def _assert_no_secret(dump: bytes | str, where: str) -> None:
    data = dump.encode() if isinstance(dump, str) else dump
    leaked = [what for what, value in SECRETS.items() if value.encode() in data]
    assert leaked == [], f"{where} holds in clear: {leaked}"
    assert b"Probe-Old-Pw-3003" not in data, f"{where} holds the replaced secret"


def test_no_secret_in_a_dump_of_the_database(
    mfcli, mf_env, backend: str, request: pytest.FixtureRequest, wal_kept: None,
    stored: dict[str, int],
) -> None:
    url = make_url(mf_env.db_url)
    if backend == "sqlite":
        path = Path(str(url.database))
        wal = Path(f"{path}-wal")
        files = {p: p.read_bytes() for p in (path, wal)}
        assert len(files[wal]) > 0  # the recent writes are (also) in the WAL
        for p, data in files.items():
            _assert_no_secret(data, str(p))
        assert PLAIN[0].encode() in files[path] + files[wal]
        conn = sqlite3.connect(path)
        try:
            dump = sqlitedump.dump(conn)
        finally:
            conn.close()
    else:
        cluster = request.getfixturevalue("pg_cluster")
        proc = subprocess.run(
            [str(cluster.bindir / "pg_dump"), "-h", str(cluster.root), "-U",
             cluster.superuser, "-d", str(url.database), "--inserts"],
            capture_output=True, text=True, check=True,
        )
        dump = proc.stdout
    for value in PLAIN:
        assert value in dump  # the dump is complete enough to find clear values
    assert "INSERT INTO" in dump and "gAAAAA" in dump  # Fernet tokens are there instead
    _assert_no_secret(dump, f"{backend} dump")


def test_secrets_read_back_in_clear_when_asked_and_only_with_their_key(
    mfcli, mf_env, core: Core, stored: dict[str, int]
) -> None:
    key = mf_env.data_dir / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    r = mfcli("credential", "show", "--id", str(stored["abra"]), "--reveal", "--format", "json")
    assert r.json["values"]["ABRAFLEXI_PASSWORD"] == SECRETS["credential password field"]
    r = mfcli("credential", "show", "--id", "2", "--reveal", "--format", "json")
    assert r.json["values"]["OFFICE365_CLSECRET"] == SECRETS["credential secret field"]
    r = mfcli("credential", "show", "--id", "3", "--reveal", "--format", "json")
    assert r.json["values"]["PASSWORD"] == SECRETS["updated credential password"]
    env = mfcli("runtemplate", "env", "--id", str(stored["contracts"]), "--reveal",
                "--format", "json").json["environment"]
    assert env["ABRAFLEXI_PASSWORD"] == SECRETS["template override by set-config"]
    env = mfcli("runtemplate", "env", "--id", str(stored["probe"]), "--reveal", "--format",
                "json").json["environment"]
    assert env["PASSWORD"] == SECRETS["template override at create"]
    assert env["SERVICE_API_KEY"] == SECRETS["undeclared *_KEY at create"]
    assert env["MY_DB_PASSWORD"] == SECRETS["undeclared key named like a secret, set-config"]
    assert env["NOTE"] == SECRETS["value marked --secret, set-config"]
    assert env["COLOR"] == "green-visible-44"
    shown = {r["key"]: r for r in mfcli("runtemplate", "env", "--id", str(stored["probe"]),
                                         "--explain", "--format", "json").json["environment"]}
    for name in ("SERVICE_API_KEY", "MY_DB_PASSWORD", "NOTE"):
        assert (shown[name]["value"], shown[name]["secret"]) == ("********", True), name
    assert (shown["COLOR"]["value"], shown["COLOR"]["secret"]) == ("green-visible-44", False)
    with core.db.read_session() as s:
        overrides, secret = decrypt_overrides(get_job(s, stored["job"]).overrides, core.box)
    assert overrides == {"PASSWORD": SECRETS["one-off override at run"], "FORCE_EXITCODE": "2",
                         "API_TOKEN": SECRETS["undeclared key named like a token, one-off"],
                         "EXTRA": SECRETS["value marked --secret, one-off"]}
    assert secret == {"PASSWORD", "API_TOKEN", "EXTRA"}
    # Masked everywhere unless revealed.
    for args in (("credential", "list"), ("credential", "show", "--id", "1"),
                 ("runtemplate", "env", "--id", str(stored["contracts"]), "--explain"),
                 ("job", "show", "--id", str(stored["job"])),
                 ("runtemplate", "show", "--id", str(stored["probe"]))):
        r = mfcli(*args, "--format", "json")
        assert r.code == 0, (args, r.err)
        _assert_no_secret(r.out, " ".join(args))

    # A key file that does not fit the stored secrets is a clear error.
    key.write_bytes(Fernet.generate_key() + b"\n")
    message = (f"multiflexi-cli: error: a stored secret does not decrypt with {key}: "
               "was the key file replaced?\n")
    for args in (("credential", "show", "--id", str(stored["abra"]), "--reveal"),
                 ("runtemplate", "env", "--id", str(stored["probe"]))):
        r = mfcli(*args)
        assert (r.code, r.out, r.err) == (1, "", message), args
    # What needs no secret still works.
    assert mfcli("credential", "show", "--id", str(stored["abra"])).code == 0


def test_a_new_installation_gets_its_key_file_on_first_secret(mfcli, mf_env,
                                                             examples_dir: Path) -> None:
    key = mf_env.data_dir / "secret.key"
    assert mfcli("company", "create", "--name", "Acme", "--slug", "acme").code == 0
    assert not key.exists()  # nothing secret stored yet
    assert mfcli("credential-type", "import-json", "--file",
                 str(examples_dir / "credential-types" / "Probe.json")).code == 0
    assert mfcli("credential", "create", "--company", "acme", "--type", "Probe", "--name", "p",
                 "--field", "PASSWORD=first-Secret-1").code == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    content = key.read_bytes()
    assert mfcli("credential", "create", "--company", "acme", "--type", "Probe", "--name", "q",
                 "--field", "PASSWORD=second-Secret-2").code == 0
    assert key.read_bytes() == content  # never rewritten


def test_a_lost_key_file_is_not_silently_replaced(mfcli, mf_env, stored: dict[str, int]
                                                  ) -> None:
    key = mf_env.data_dir / "secret.key"
    key.unlink()
    r = mfcli("credential", "create", "--company", "acme", "--type", "Probe", "--name", "new",
              "--field", "PASSWORD=Another-Secret-4")
    assert r.code == 1
    assert "the secret key is missing, but the database holds" in r.err
    assert "restore the key file from your backup" in r.err
    assert not key.exists()  # no new key that would make the stored secrets unreadable
    assert mfcli("credential", "show", "--id", str(stored["abra"])).code == 0  # masked: fine
