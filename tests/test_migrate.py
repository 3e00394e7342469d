"""``event-kafka migrate``: opensips.cfg -> service TOML (pure logic, no broker)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from event_kafka.cli import main
from event_kafka.migrate import CfgSyntaxError, migrate_cfg, tokenize
from event_kafka.service.config import load_config_text
from tests.support.timing import best_of

DATA = Path(__file__).parent / "data"


def run(tmp_path: Path, cfg: str) -> tuple[int, str, str]:
    path = tmp_path / "opensips.cfg"
    path.write_text(cfg)
    r = CliRunner().invoke(main, ["migrate", str(path)])
    return r.exit_code, r.stdout, r.stderr


def test_realistic_cfg() -> None:
    """The module doc's examples in a whole script: quoting variants, comments, a value split
    over two lines, report routes, a udp: subscriber left alone."""
    cfg = DATA / "opensips-kafka.cfg"
    r = CliRunner().invoke(main, ["migrate", str(cfg)])
    assert r.exit_code == 0, r.stderr
    doc = tomllib.loads(r.stdout)
    assert doc["broker_ids"] == [
        "[k1]127.0.0.1:9092/topic1?g.linger.ms=100&t.acks=all",
        "[k2]10.0.0.1:9092,10.0.0.2:9092/cdr",
        "[k3]127.0.0.1:9092/secure?g.security.protocol=SASL_PLAINTEXT&g.sasl.mechanism=PLAIN"
        '&g.sasl.username=ops&g.sasl.password=s3cr"et',
        "[kcase]127.0.0.1:9092/tA",
    ]
    assert doc["subscriptions"] == [
        {"event": "E_PIKE_BLOCKED", "socket": "kafka:127.0.0.1:9092/pike?key=callid"}
    ]
    assert doc["report_routes"] == {"kafka_report": {"log": "failure"}}
    settings = load_config_text(r.stdout)  # what it printed is a config the service starts with
    assert settings.broker_id_names == ("k1", "k2", "k3", "kcase")
    assert f"{cfg}:17" in r.stdout  # each entry says where it came from
    assert "udp:HOST:PORT" in r.stderr  # and what OpenSIPS must change
    # The inline password is named, never shown, with the ways to keep it out of the file.
    assert "secrets written in clear (broker_id [k3] g.sasl.password)" in r.stderr
    assert "${cred:NAME}" in r.stderr and 's3cr"et' not in r.stderr


def test_opensips_lexical_rules() -> None:
    toks = tokenize(
        'a("x\\x41\\101\\t\\"\\\\\\q", \'raw\\n"#\')  # c "not a string\n'
        '/* a /* nested */ comment */ b("line\\\ncont")'
    )
    assert [(t.kind, t.value, t.line) for t in toks] == [
        ("word", "a", 1),
        ("punct", "(", 1),
        ("str", 'xAA\t"\\\\q', 1),
        ("punct", ",", 1),
        ("str", 'raw\\n"#', 1),
        ("punct", ")", 1),
        ("word", "b", 2),
        ("punct", "(", 2),
        ("str", "linecont", 2),
        ("punct", ")", 3),
    ]
    for bad in ('"open', "'open", "/* /* */"):
        with pytest.raises(CfgSyntaxError, match="line 1: unterminated"):
            tokenize(bad)


BAD = """\
loadmodule "event_kafka.so"
modparam("event_kafka", "broker_id", "[k1]127.0.0.1:9092/ok")
modparam("event_kafka", "broker_id", "[]127.0.0.1:9092/empty-id")
modparam("event_kafka", "broker_id", "[k2]kafka:127.0.0.1:9092/prefixed")
modparam("event_kafka", "broker_id", "[k1]127.0.0.1:9092/again")
modparam("event_kafka", "broker_id", "[k3]h:9092/t?g.sasl.password=s3cret&g.acks=all")
modparam("event_kafka", "brokers", "[k4]h:9092/t")
modparam("event_kafka", "broker_id", 5)
modparam("event_.*", "broker_id", "[k5]h:9092/t?t.acks=all&t.acks=1")
modparam("tm", "broker_id", "[not-ours]")
"""


def test_invalid_entries_are_reported_with_line_and_library_error(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, BAD)
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert len(lines) == 7, err
    assert lines[0].endswith(
        "opensips.cfg:3: invalid broker_id '[]127.0.0.1:9092/empty-id': "
        "empty broker id at position 1"
    )
    assert "opensips.cfg:4: " in lines[1] and "takes no kafka: prefix" in lines[1]
    assert lines[2].endswith("opensips.cfg:5: broker id [k1] already defined at line 2")
    assert "opensips.cfg:6: " in lines[3] and "acks is a topic-level property" in lines[3]
    assert "opensips.cfg:7: event_kafka has no parameter 'brokers'" in lines[4]
    assert "opensips.cfg:8: broker_id must be a quoted string" in lines[5]
    assert "opensips.cfg:9: " in lines[6] and "duplicate property t.acks" in lines[6]
    assert "s3cret" not in err


def test_loader_errors_are_reported(tmp_path: Path) -> None:
    cfg = (
        'startup_route { subscribe_event("E BAD", "kafka:127.0.0.1:9092/t?g.sasl.password=pw1"); }'
    )
    code, out, err = run(tmp_path, cfg)
    assert (code, out) == (1, "")
    assert "subscriptions[0].event" in err and "a space, control or non-printable character" in err
    assert "pw1" not in err


def test_nothing_to_migrate_is_an_error() -> None:
    result = migrate_cfg('loadmodule "tm.so"\n# modparam("event_kafka", "broker_id", "[k]h/t")\n')
    assert result.toml == "" and "no modparam" in result.problems[0]


def test_linear_time() -> None:
    """A long script of comments and strings tokenizes in time proportional to its size."""

    def cost(n: int) -> float:
        text = ('/* c */ modparam("x", "y", "\\x41\\101") # z\n' * n) + "'" + "a" * n + "'"
        return best_of(lambda: tokenize(text), 5)

    small, big = cost(50), cost(3200)
    assert big / small < 64 * 8  # 64x the input: generous for a shared, busy machine


BID = "[k]h:9092/t"


@pytest.mark.parametrize(
    ("module", "applies"),
    [
        ("event_kafka", True), ("KAFKA", True), ("event_.*", True), ("^event_kafka$", True),
        ("event_(kafka|rabbitmq)", True), ("^[[:alpha:]_]{11}$", True), ("[]k]af", True),
        ("^kafka", False), ("tm", False), ("^[a-z]{12}$", False), ("k\\.f", False),
    ],
)  # fmt: skip
def test_module_name_is_a_posix_regex_searched_ignoring_case(module: str, applies: bool) -> None:
    result = migrate_cfg(f'modparam("{module}", "broker_id", "{BID}")\n')
    assert ("[k]h:9092/t" in result.toml) == applies, result.problems


@pytest.mark.parametrize(
    ("module", "why"),
    [
        # Python's re backtracks on these for minutes, or recurses out of the stack.
        ("((((((((((.*)*)*)*)*)*)*)*)*)*)*X", None),
        ("(.*)" * 40 + "X", None),
        ("(" * 5000 + ")" * 5000, "groups nested deeper than 64"),
        ("event_(kafka", "unbalanced ("),
        ("(a)\\1", "unsupported escape \\1"),
        ("a{999}", "invalid repetition {999}"),
    ],
)
def test_hostile_module_regex_is_decided_at_once(module: str, why: str | None) -> None:
    result = migrate_cfg(f'modparam("{module}", "broker_id", "{BID}")\n')
    assert result.toml == ""
    if why is not None:
        assert f"opensips.cfg:1: invalid module regex in modparam: {why}" in result.problems[0]


def test_migration_page_grammar_table_quotes_the_real_errors() -> None:
    """Every row of docs/migrating-from-opensips.md's grammar tables whose input is refused
    quotes the library's actual message (so the page cannot drift from the code)."""
    import re

    from event_kafka.kafka_socket import check_command

    page = (Path(__file__).parents[1] / "docs" / "migrating-from-opensips.md").read_text()
    page = page[page.index("## Grammar") : page.index("Kept as in OpenSIPS")]
    rows = re.findall(r"^\| `([^`]+)`(?: \([^)]*\))? \| [^|]+ \| `([^`]+)`", page, re.M)
    checked = 0
    for text, message in rows:
        if text.endswith("..."):  # a secret value left out of the page
            text = text[:-3] + "s3cret"
        code, out = check_command(text)
        assert code == 2, text
        assert message in out, (text, out)
        assert "s3cret" not in out
        checked += 1
    assert checked >= 25
