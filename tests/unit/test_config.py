"""Configuration inheritance: the one function that decides a job's environment."""

from __future__ import annotations

import pytest

from multiflexid.domain.appdef import EnvFieldDef
from multiflexid.domain.config import (
    MASK,
    SOURCE_DEFAULT,
    SOURCE_MULTIFLEXI,
    SOURCE_OVERRIDE,
    SOURCE_TEMPLATE,
    ConfigError,
    CredentialLayer,
    expand,
    mask_text,
    normalize,
    resolve_environment,
    to_text,
)

CRED = CredentialLayer(
    id=7, name="acme abraflexi", type_code="AbraFlexi",
    values={"API_URL": "https://cred.example", "API_USER": "cred-user",
            "API_PASSWORD": "cred-Secret-1"},
    secret_keys=frozenset({"API_PASSWORD"}),
)
CRED_SOURCE = "credential #7 'acme abraflexi' (AbraFlexi)"


def fields() -> list[EnvFieldDef]:
    return [
        EnvFieldDef("API_URL", "url", defval="https://default.example", required=True),
        EnvFieldDef("API_USER", "string", defval="default-user"),
        EnvFieldDef("API_PASSWORD", "password", required=True),
        EnvFieldDef("DEBUG", "bool", defval=False),
        EnvFieldDef("LIMIT", "integer", defval=10),
    ]


# --- the order of the layers ----------------------------------------------------------------


def test_app_defaults_alone() -> None:
    env = resolve_environment(fields())
    assert env.environ() == {"API_URL": "https://default.example", "API_USER": "default-user",
                             "DEBUG": "0", "LIMIT": "10"}
    assert {v.source for v in env.values.values()} == {SOURCE_DEFAULT}
    assert env.missing == ["API_PASSWORD"]
    assert not env.ok
    assert env.blocked_reason == "required configuration missing: API_PASSWORD"


def test_each_layer_overrides_the_one_before() -> None:
    env = resolve_environment(
        fields(),
        credentials=[CRED],
        template={"API_USER": "template-user", "LIMIT": "20"},
        overrides={"LIMIT": "30"},
        injected={"MULTIFLEXI_JOB_ID": "42"},
    )
    assert env.ok, env.blocked_reason
    v = env.values
    assert (v["API_URL"].value, v["API_URL"].source) == ("https://cred.example", CRED_SOURCE)
    assert v["API_URL"].overridden == (SOURCE_DEFAULT,)
    assert (v["API_USER"].value, v["API_USER"].source) == ("template-user", SOURCE_TEMPLATE)
    assert v["API_USER"].overridden == (SOURCE_DEFAULT, CRED_SOURCE)
    assert (v["LIMIT"].value, v["LIMIT"].source) == ("30", SOURCE_OVERRIDE)
    assert v["LIMIT"].overridden == (SOURCE_DEFAULT, SOURCE_TEMPLATE)
    assert (v["DEBUG"].value, v["DEBUG"].source, v["DEBUG"].overridden) == (
        "0", SOURCE_DEFAULT, ())
    assert (v["MULTIFLEXI_JOB_ID"].value, v["MULTIFLEXI_JOB_ID"].source) == (
        "42", SOURCE_MULTIFLEXI)


def test_multiflexi_variables_win_over_everything() -> None:
    env = resolve_environment(
        [EnvFieldDef("MULTIFLEXI_COMPANY_ID", "string", defval="9")],
        template={"MULTIFLEXI_COMPANY_ID": "8"},
        overrides={"MULTIFLEXI_COMPANY_ID": "7"},
        injected={"MULTIFLEXI_COMPANY_ID": "1"},
    )
    rv = env.values["MULTIFLEXI_COMPANY_ID"]
    assert (rv.value, rv.source) == ("1", SOURCE_MULTIFLEXI)
    assert rv.overridden == (SOURCE_DEFAULT, SOURCE_TEMPLATE, SOURCE_OVERRIDE)


def test_later_credentials_win_over_earlier_ones() -> None:
    other = CredentialLayer(8, "second", "AbraFlexi", {"API_USER": "second-user"})
    env = resolve_environment(fields(), credentials=[CRED, other])
    assert env.values["API_USER"].value == "second-user"
    assert env.values["API_USER"].overridden == (SOURCE_DEFAULT, CRED_SOURCE)


def test_keys_the_app_does_not_declare_pass_through_as_strings() -> None:
    env = resolve_environment([], template={"EXTRA": " kept as is "})
    assert env.values["EXTRA"].value == " kept as is "
    assert env.values["EXTRA"].type == "string"
    assert env.ok


# --- types ----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["true", "TRUE", "yes", "Yes", "on", "1", "y", "t", " on "])
def test_bool_true_spellings_become_1(raw: str) -> None:
    assert normalize("bool", raw, "DEBUG") == "1"


@pytest.mark.parametrize("raw", ["false", "False", "no", "off", "0", "", "n", "f"])
def test_bool_false_spellings_become_0(raw: str) -> None:
    assert normalize("bool", raw, "DEBUG") == "0"


def test_bool_nonsense_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^DEBUG: 'maybe' is not a boolean"):
        normalize("bool", "maybe", "DEBUG")


def test_defaults_of_json_types_are_written_as_text() -> None:
    assert [to_text(v) for v in (True, False, None, 5, 1.5, "x", ["a"], {"k": 1})] == [
        "1", "0", "", "5", "1.5", "x", '["a"]', '{"k": 1}']


@pytest.mark.parametrize(("raw", "out"), [("42", "42"), (" 7 ", "7"), ("+5", "5"),
                                          ("-3", "-3"), ("007", "7")])
def test_integers(raw: str, out: str) -> None:
    assert normalize("integer", raw, "N") == out


@pytest.mark.parametrize("raw", ["4.2", "ten", "1e3", "0x10", "1_000"])
def test_not_integers(raw: str) -> None:
    with pytest.raises(ConfigError, match=rf"^N: {raw!r} is not an integer$"):
        normalize("integer", raw, "N")


@pytest.mark.parametrize("raw", ["1.5", "-0.25", "3", "1e-3", ".5"])
def test_floats(raw: str) -> None:
    assert normalize("float", raw, "RATE") == raw


@pytest.mark.parametrize("raw", ["one", "1,5", "nan", "inf", "-Infinity", "1_000"])
def test_not_floats(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^RATE: .* is not a (finite )?number$"):
        normalize("float", raw, "RATE")


def test_email_and_url() -> None:
    assert normalize("email", " office@acme.example ", "MAIL") == "office@acme.example"
    for bad in ("office", "office@", "a b@acme.example", "@acme.example"):
        with pytest.raises(ConfigError, match=r"^MAIL: .* is not an e-mail address$"):
            normalize("email", bad, "MAIL")
    assert normalize("url", "https://demo.flexibee.eu:5434", "U") == \
        "https://demo.flexibee.eu:5434"
    assert normalize("url", "file:///var/tmp", "U") == "file:///var/tmp"
    for bad in ("demo.flexibee.eu", "https://", "just words"):
        with pytest.raises(ConfigError, match=r"^U: .* is not a URL"):
            normalize("url", bad, "U")


def test_set_with_dict_and_list_options() -> None:
    as_dict = {"pdf": "PDF document", "isdocx": "ISDOC"}
    assert normalize("set", "pdf", "FMT", as_dict) == "pdf"
    with pytest.raises(ConfigError, match=r"^FMT: 'PDF document' is not one of: pdf, isdocx$"):
        normalize("set", "PDF document", "FMT", as_dict)
    as_list = ["daily", "weekly"]
    assert normalize("set", "weekly", "P", as_list) == "weekly"
    with pytest.raises(ConfigError, match=r"^P: 'monthly' is not one of: daily, weekly$"):
        normalize("set", "monthly", "P", as_list)
    labelled = [{"value": "a", "label": "A"}, {"value": "b", "label": "B"}]
    assert normalize("set", "b", "L", labelled) == "b"
    with pytest.raises(ConfigError, match=r"^L: 'A' is not one of: a, b$"):
        normalize("set", "A", "L", labelled)
    assert normalize("set", "anything", "FREE", None) == "anything"  # no options: free


def test_strings_passwords_and_text_are_kept_verbatim() -> None:
    for ftype in ("string", "password", "text", "file-path"):
        assert normalize(ftype, "  spaced value ", "K") == "  spaced value "


def test_empty_values_are_for_the_required_check_not_the_type_check() -> None:
    for ftype in ("integer", "float", "email", "url", "set"):
        assert normalize(ftype, "", "K", ["a"]) == ""


def test_invalid_values_are_collected_and_block_the_job() -> None:
    env = resolve_environment(
        fields(), credentials=[CRED], template={"LIMIT": "many", "DEBUG": "perhaps"}
    )
    assert env.errors == [
        "DEBUG: 'perhaps' is not a boolean (use true/false, yes/no or 1/0)",
        "LIMIT: 'many' is not an integer",
    ]
    assert not env.ok
    assert env.blocked_reason == (
        "invalid configuration: DEBUG: 'perhaps' is not a boolean (use true/false, yes/no "
        "or 1/0); LIMIT: 'many' is not an integer"
    )


def test_invalid_secret_value_is_not_shown_in_the_error() -> None:
    env = resolve_environment(
        [EnvFieldDef("PIN", "integer", secret=True)], template={"PIN": "12ab-secret"}
    )
    assert env.errors == [f"PIN: {MASK!r} is not an integer"]
    assert "12ab-secret" not in (env.blocked_reason or "")


def test_required_fields_missing_are_reported_by_name() -> None:
    env = resolve_environment(
        [
            EnvFieldDef("A_URL", "url", required=True),
            EnvFieldDef("B_TOKEN", "password", required=True),
            EnvFieldDef("C_BLANK", "string", required=True),
            EnvFieldDef("D_OPTIONAL", "string"),
            EnvFieldDef("E_GIVEN", "string", required=True),
        ],
        template={"C_BLANK": "   ", "E_GIVEN": "yes"},
    )
    assert env.missing == ["A_URL", "B_TOKEN", "C_BLANK"]
    assert env.blocked_reason == "required configuration missing: A_URL, B_TOKEN, C_BLANK"


# --- secrets --------------------------------------------------------------------------------


def test_secrets_are_masked_unless_revealed() -> None:
    env = resolve_environment(fields(), credentials=[CRED],
                              template={"TOKEN": "tok-123"}, template_secret_keys=["TOKEN"])
    pw = env.values["API_PASSWORD"]
    assert (pw.value, pw.shown, pw.secret) == ("cred-Secret-1", MASK, True)
    assert env.values["TOKEN"].secret  # secret because stored encrypted on the template
    assert env.masked()["API_PASSWORD"] == MASK
    assert env.masked()["TOKEN"] == MASK
    assert env.masked()["API_USER"] == "cred-user"
    assert env.environ()["API_PASSWORD"] == "cred-Secret-1"
    explained = {r["key"]: r for r in env.explain()}
    assert explained["API_PASSWORD"] == {
        "key": "API_PASSWORD", "value": MASK, "source": CRED_SOURCE, "secret": True,
        "type": "password", "overridden": [],
    }
    assert {r["key"]: r["value"] for r in env.explain(reveal=True)}["API_PASSWORD"] == \
        "cred-Secret-1"
    assert [r["key"] for r in env.explain()] == sorted(explained)


def test_a_credential_field_that_is_secret_stays_secret_whoever_sets_it() -> None:
    env = resolve_environment([], credentials=[CRED], overrides={"API_PASSWORD": "one-off-pw"})
    rv = env.values["API_PASSWORD"]
    assert (rv.value, rv.source, rv.secret) == ("one-off-pw", SOURCE_OVERRIDE, True)
    assert env.secrets() == ["one-off-pw"]


def test_secrets_longest_first_for_masking() -> None:
    env = resolve_environment(
        [EnvFieldDef("A", "password"), EnvFieldDef("B", "password"), EnvFieldDef("C", "string")],
        template={"A": "abc", "B": "abcdef", "C": "plain"},
    )
    assert env.secrets() == ["abcdef", "abc"]
    assert mask_text("x abcdef y abc z", env.secrets()) == f"x {MASK} y {MASK} z"


def test_mask_text_leaves_very_short_secrets_alone() -> None:
    assert mask_text("exit 1 after 12 tries", ["1", "12"]) == "exit 1 after 12 tries"
    assert mask_text("pw=hunter2 again hunter2", ["hunter2"]) == f"pw={MASK} again {MASK}"


# --- placeholders in defaults ----------------------------------------------------------------


def test_placeholders_in_defaults_are_filled_from_the_final_values() -> None:
    env = resolve_environment(
        [
            EnvFieldDef("ABRAFLEXI_COMPANY", "string", defval="demo_de"),
            EnvFieldDef("RESULT_FILE", "string", defval="contracts_{ABRAFLEXI_COMPANY}.json"),
            EnvFieldDef("ZABBIX_KEY", "string", defval="Contracts-${ABRAFLEXI_COMPANY}"),
            EnvFieldDef("JOB_NOTE", "string", defval="job {MULTIFLEXI_JOB_ID} {UNKNOWN}"),
        ],
        template={"ABRAFLEXI_COMPANY": "acme_sro"},
        injected={"MULTIFLEXI_JOB_ID": "42"},
    )
    assert env.values["RESULT_FILE"].value == "contracts_acme_sro.json"
    assert env.values["ZABBIX_KEY"].value == "Contracts-acme_sro"
    assert env.values["JOB_NOTE"].value == "job 42 {UNKNOWN}"  # unknown ones stay as written
    assert env.values["RESULT_FILE"].source == SOURCE_DEFAULT


def test_values_given_by_the_admin_are_not_expanded() -> None:
    env = resolve_environment(
        [EnvFieldDef("A", "string", defval="x"), EnvFieldDef("B", "string", defval="{A}")],
        template={"B": "literal {A} braces"},
    )
    assert env.values["B"].value == "literal {A} braces"


def test_a_default_built_from_a_secret_is_secret() -> None:
    env = resolve_environment(
        [
            EnvFieldDef("PASSWORD", "password", defval="donotcare"),
            EnvFieldDef("ZABBIX_KEY", "string", defval="multiflexi-probe-{PASSWORD}"),
        ],
        credentials=[CredentialLayer(1, "probe", "Probe", {"PASSWORD": "s3cr3t-pw"},
                                     frozenset({"PASSWORD"}))],
    )
    zk = env.values["ZABBIX_KEY"]
    assert zk.value == "multiflexi-probe-s3cr3t-pw"
    assert zk.secret and zk.shown == MASK
    assert "multiflexi-probe-s3cr3t-pw" in env.secrets()


def test_expand_reports_the_keys_it_used() -> None:
    assert expand("{A}-${B}-{C}-$A", {"A": "1", "B": "2"}) == ("1-2-{C}-$A", {"A", "B"})


# --- RESULT_FILE ------------------------------------------------------------------------------


def test_relative_result_file_is_placed_in_the_job_dir() -> None:
    rf = [EnvFieldDef("RESULT_FILE", "string", defval="env_report.json")]
    env = resolve_environment(rf, job_dir="/var/lib/multiflexi/jobs/42")
    assert env.values["RESULT_FILE"].value == "/var/lib/multiflexi/jobs/42/env_report.json"
    assert env.values["RESULT_FILE"].source == SOURCE_DEFAULT
    env = resolve_environment(rf, template={"RESULT_FILE": "/srv/out.json"},
                              job_dir="/var/lib/multiflexi/jobs/42")
    assert env.values["RESULT_FILE"].value == "/srv/out.json"
    env = resolve_environment(rf)  # no job yet (e.g. `runtemplate env`): as configured
    assert env.values["RESULT_FILE"].value == "env_report.json"
