"""Call-ID extraction for ``key=callid`` (spec §5.4, §9 item 4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from event_kafka.sip import CallId, SipMessageError, callid_of, key_for
from tests.support import CALL_ID, invite

SDP = (
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.101\r\n"
    "t=0 0\r\n"
    "m=audio 49172 RTP/AVP 0\r\n"
    "Call-ID: fake-in-body\r\n"  # a parser that reads the body would find this one
)
INVITE = invite(body=SDP, content_type="application/sdp")
CALLID = CALL_ID


def test_realistic_invite() -> None:
    assert callid_of(INVITE) == CALLID


def test_bytes_input() -> None:
    assert callid_of(INVITE.encode()) == CALLID
    assert callid_of(bytearray(INVITE.encode())) == CALLID  # type: ignore[arg-type]


def test_body_is_not_searched() -> None:
    no_header = INVITE.replace(f"Call-ID: {CALLID}\r\n", "")
    assert "Call-ID: fake-in-body" in no_header
    assert callid_of(no_header) is None
    assert callid_of(no_header.encode()) is None


def test_lf_only() -> None:
    assert callid_of(INVITE.replace("\r\n", "\n")) == CALLID
    lf_body = INVITE.replace(f"Call-ID: {CALLID}\r\n", "").replace("\r\n", "\n")
    assert callid_of(lf_body) is None


def test_mixed_line_endings() -> None:
    msg = "BYE sip:b@h SIP/2.0\nVia: x\r\nCall-ID: mixed\n\r\nCall-ID: body\r\n"
    assert callid_of(msg) == "mixed"


@pytest.mark.parametrize(
    "header",
    [
        "Call-ID: abc@h",
        "call-id: abc@h",
        "CALL-ID: abc@h",
        "cAlL-iD: abc@h",
        "i: abc@h",
        "I: abc@h",
        "Call-ID:abc@h",
        "Call-ID :abc@h",
        "Call-ID\t:\tabc@h",
        "Call-ID \t : \t abc@h \t ",
        "i:abc@h",
        "Call-ID:\r\n abc@h",
        "Call-ID:\r\n\t abc@h",
    ],
)
def test_header_forms(header: str) -> None:
    msg = f"OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n{header}\r\nCSeq: 1 OPTIONS\r\n\r\n"
    assert callid_of(msg) == "abc@h"


def test_folding_joins_with_one_space() -> None:
    msg = "MESSAGE sip:h SIP/2.0\r\nCall-ID: part1 \r\n \t part2\r\n\tpart3\r\nCSeq: 1 M\r\n\r\n"
    assert callid_of(msg) == "part1 part2 part3"
    assert callid_of(msg.replace("\r\n", "\n")) == "part1 part2 part3"


def test_folded_other_header_does_not_hide_or_fake_callid() -> None:
    msg = "BYE sip:h SIP/2.0\r\nSubject: hello\r\n i: fake\r\nCall-ID: real\r\n\r\n"
    assert callid_of(msg) == "real"


def test_similar_header_names_are_not_callid() -> None:
    msg = (
        "BYE sip:h SIP/2.0\r\nIf-Match: x\r\nCall-IDX: y\r\nX-Call-ID: z\r\nIn-Reply-To: w\r\n\r\n"
    )
    assert callid_of(msg) is None


def test_first_callid_wins() -> None:
    assert callid_of("BYE sip:h SIP/2.0\r\ni: one\r\nCall-ID: two\r\n\r\n") == "one"


def test_status_line() -> None:
    assert callid_of("SIP/2.0 200 OK\r\nCall-ID: r1\r\n\r\n") == "r1"
    assert callid_of("SIP/2.0 486 Busy Here\r\nCall-ID: r2\r\n") == "r2"
    assert callid_of("sip/2.0 100 \r\nCall-ID: r3\r\n\r\n") == "r3"  # empty reason


@pytest.mark.parametrize(
    "msg",
    [
        "INVITE sip:h SIP/2.0\r\nVia: x\r\n\r\n",  # no Call-ID
        "INVITE sip:h SIP/2.0\r\nCall-ID:\r\n\r\n",  # empty body
        "INVITE sip:h SIP/2.0\r\nCall-ID:   \t \r\n\r\n",  # blank body
        "INVITE sip:h SIP/2.0\r\nCall-ID:\r\n \r\n\r\n",  # folded blank body
        "INVITE sip:h SIP/2.0",  # start line only, no terminator
        "INVITE sip:h SIP/2.0\r\n",
        "INVITE sip:h SIP/2.0\r\n\r\nCall-ID: in-body\r\n",  # no headers at all
    ],
)
def test_no_callid(msg: str) -> None:
    assert callid_of(msg) is None
    assert callid_of(msg.encode()) is None
    assert key_for(msg) is None


def test_leading_crlf_before_start_line_is_ignored() -> None:
    assert callid_of("\r\n\r\nBYE sip:h SIP/2.0\r\nCall-ID: x\r\n\r\n") == "x"


@pytest.mark.parametrize(
    "msg",
    [
        "",
        b"",
        "hello world",
        "Call-ID: abc\r\n\r\n",  # headers without a start line
        "INVITE sip:h SIP/3.0\r\nCall-ID: a\r\n",
        "INVITE  sip:h SIP/2.0\r\nCall-ID: a\r\n",  # two spaces
        "INVITE sip:h\r\nCall-ID: a\r\n",
        "SIP/2.0 20 OK\r\nCall-ID: a\r\n",
        "SIP/2.0 200\r\nCall-ID: a\r\n",  # the SP before the reason is required
        "INVITE sip:h SIP/2.0 extra\r\n",
        " INVITE sip:h SIP/2.0\r\n",
        "INV(TE sip:h SIP/2.0\r\n",
        b"\xff\xfe garbage",
    ],
)
def test_not_sip_raises(msg: str | bytes) -> None:
    with pytest.raises(SipMessageError, match="not a SIP request or status line"):
        callid_of(msg)
    with pytest.raises(SipMessageError):
        key_for(msg)


def test_error_is_a_value_error_and_quotes_the_line() -> None:
    with pytest.raises(ValueError, match="'hello'"):
        callid_of("hello\r\nCall-ID: x\r\n")


@pytest.mark.parametrize("bad", ["a\x01b", "a\x7fb", "a\rb", "a\x00b", "a\u200bb", "a\udcffb"])
def test_control_chars_in_callid_rejected(bad: str) -> None:
    with pytest.raises(SipMessageError, match="non-printable"):
        callid_of(f"BYE sip:h SIP/2.0\r\nCall-ID: {bad}\r\n\r\n")


def test_invalid_utf8_callid_rejected() -> None:
    with pytest.raises(SipMessageError, match="not valid UTF-8"):
        callid_of(b"BYE sip:h SIP/2.0\r\nCall-ID: a\xffb\r\n\r\n")


def test_invalid_utf8_elsewhere_is_fine() -> None:
    msg = b"BYE sip:h SIP/2.0\r\nX-Junk: \xff\xfe\r\nCall-ID: ok\r\n\r\n\xff body"
    assert callid_of(msg) == "ok"


def test_non_ascii_printable_callid_kept() -> None:
    assert callid_of("BYE sip:h SIP/2.0\r\nCall-ID: caf\u00e9@h\r\n\r\n") == "caf\u00e9@h"
    assert key_for("BYE sip:h SIP/2.0\r\nCall-ID: caf\u00e9@h\r\n\r\n") == "caf\u00e9@h".encode()


def test_inner_tab_kept() -> None:
    assert callid_of("BYE sip:h SIP/2.0\r\nCall-ID: a\tb\r\n\r\n") == "a\tb"


def test_wrong_type() -> None:
    with pytest.raises(TypeError, match="sip_msg must be str or bytes"):
        callid_of(42)  # type: ignore[arg-type]


# --- key_for / CallId ----------------------------------------------------------------------


def test_key_for_forms() -> None:
    assert key_for(None) is None
    assert key_for(INVITE) == CALLID.encode()
    assert key_for(INVITE.encode()) == CALLID.encode()
    assert key_for(CallId(CALLID)) == CALLID.encode()


def test_callid_marker() -> None:
    c = CallId("  abc@h\t")
    assert c == "abc@h"
    assert isinstance(c, str)
    assert callid_of(c) == "abc@h"
    assert type(callid_of(c)) is str
    assert key_for(CallId("")) is None
    assert callid_of(CallId("")) is None


@pytest.mark.parametrize("bad", ["a\nb", "a\x00", "\udcff", "a\x1bb"])
def test_callid_marker_rejects_control_chars(bad: str) -> None:
    with pytest.raises(SipMessageError):
        CallId(bad)


def test_callid_marker_type() -> None:
    with pytest.raises(TypeError):
        CallId(b"abc")  # type: ignore[arg-type]


def test_plain_str_callid_is_parsed_as_sip() -> None:
    # Only the CallId marker means "already a Call-ID"; a bare str is a SIP message.
    with pytest.raises(SipMessageError):
        key_for("abc@h")


# --- properties ---------------------------------------------------------------------------


@given(st.text())
def test_property_text_only_raises_sip_message_error(msg: str) -> None:
    try:
        result = callid_of(msg)
    except SipMessageError:
        return
    assert result is None or (result and result.strip(" \t") == result)


@given(st.one_of(st.binary(), st.binary().map(lambda b: b"SIP/2.0 200 OK\r\n" + b)))
def test_property_bytes_only_raise_sip_message_error(msg: bytes) -> None:
    try:
        result = callid_of(msg)
    except SipMessageError:
        return
    assert result is None or (result and result.strip(" \t") == result)


@given(st.text())
def test_property_text_after_start_line_only_raises_sip_message_error(rest: str) -> None:
    try:
        result = callid_of("BYE sip:h SIP/2.0\r\n" + rest)
    except SipMessageError:
        return
    assert result is None or (result and result.strip(" \t") == result)


@given(
    st.lists(
        st.sampled_from(["", "\r", "\n", " ", "\t", ":", "i", "I", "Call-ID", "x"]), max_size=30
    )
)
def test_property_header_soup_only_raises_sip_message_error(parts: list[str]) -> None:
    msg = "BYE sip:h SIP/2.0\r\n" + "".join(parts)
    try:
        result = callid_of(msg)
    except SipMessageError:
        return
    assert result is None or result.replace("\t", " ").isprintable()
    assert result is None or result.strip(" \t") == result != ""


word = st.text(
    st.sampled_from(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~()<>:\\\"/[]?{}"
    ),
    min_size=1,
    max_size=40,
)
header_name = st.sampled_from(["Call-ID", "call-id", "CALL-ID", "i", "I", "Call-Id"])
ws = st.text(st.sampled_from(" \t"), max_size=3)
eol = st.sampled_from(["\r\n", "\n"])


@given(
    callid=st.builds(lambda a, b: f"{a}@{b}" if b else a, word, st.one_of(st.just(""), word)),
    name=header_name,
    before=ws,
    after=ws,
    trailing=ws,
    nl=eol,
    headers_before=st.lists(st.sampled_from(["Via: SIP/2.0/UDP h", "Max-Forwards: 70"])),
    as_bytes=st.booleans(),
)
def test_property_generated_messages(
    callid: str,
    name: str,
    before: str,
    after: str,
    trailing: str,
    nl: str,
    headers_before: list[str],
    as_bytes: bool,
) -> None:
    lines = ["REGISTER sip:h SIP/2.0", *headers_before, f"{name}{before}:{after}{callid}{trailing}"]
    msg = nl.join([*lines, "CSeq: 1 REGISTER", "", "Call-ID: body"])
    assert callid_of(msg.encode() if as_bytes else msg) == callid
    assert key_for(msg) == callid.encode()
