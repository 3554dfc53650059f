import logging
import sys

import pytest

from monitor.cli.logs import MaskedFormatter
from monitor.text import (
    content_hash,
    fold,
    mask_url,
    normalize,
    snippet,
    stem_key,
    surface_forms,
    term_keys,
    tokenize,
    word_key,
)


def key(word: str) -> str:
    return word_key(fold(word))


def test_plurals_fold_to_the_singular() -> None:
    pairs = {
        "troops": "troop",
        "sanctions": "sanction",
        "countries": "country",
        "exercises": "exercise",
        "boxes": "box",
        "churches": "church",
        "missiles": "missile",
        "talks": "talk",
    }
    for plural, singular in pairs.items():
        assert key(plural) == key(singular) == singular


def test_tense_and_lookalikes_are_not_folded() -> None:
    assert key("sanctioned") != key("sanction")
    assert key("sanctimonious") != key("sanction")
    assert key("news") == "news"
    assert key("crisis") == "crisis"
    assert key("us") == "us"
    assert key("this") == "this"


def test_case_accents_and_possessives() -> None:
    assert key("ZÉLENSKY") == "zelensky"
    assert normalize("Russia's Zélensky’s “anti-tank” don't") == " russia zelensky anti tank don t "
    assert normalize("Київ, ﬁnal") == " киів final "


def test_stem_key_folds_inflections_not_derivations() -> None:
    for form in ("sanction", "sanctions", "sanctioned", "sanctioning"):
        assert stem_key(form) == "sanction"
    for form in ("move", "moves", "moved", "moving"):
        assert stem_key(form) == "mov"
    assert stem_key("planned") == stem_key("plans") == "plan"
    assert stem_key("denied") == stem_key("denies") == "deny"
    assert stem_key("wellness") != stem_key("well")


def test_surface_forms_invert_the_key_functions() -> None:
    assert surface_forms(("troop",), "word") == ["troop", "troops"]
    assert "countries" in surface_forms(("country",), "word")
    assert surface_forms(("new",), "word") == ["new"]  # "news" is not new's plural
    stems = surface_forms(("sanction",), "stem")
    assert {"sanction", "sanctions", "sanctioned", "sanctioning"} <= set(stems)
    assert all(stem_key(f) == "sanction" for f in stems)
    assert "wellness" not in surface_forms(("well",), "stem")
    assert surface_forms(("anti", "tank"), "prefix") == ["anti tank"]  # tank* covers tanks


def test_tokenize_keeps_spans_of_the_original_words() -> None:
    text = "Anti-tank missiles, Kremlin’s view"
    tokens = tokenize(text)
    assert tokens.words == ("anti", "tank", "missiles", "kremlin", "view")
    assert [text[s:e] for s, e in tokens.spans] == ["Anti", "tank", "missiles", "Kremlin", "view"]


def test_term_keys_strip_quotes_and_punctuation() -> None:
    assert term_keys('"anti-tank missiles"') == ("anti", "tank", "missile")
    assert term_keys("!!!") == ()


def test_content_hash_ignores_case_and_spacing() -> None:
    assert content_hash("Troops  at the BORDER") == content_hash("troops at the border")
    assert content_hash("troops at the border") != content_hash("troops at the frontier")


def test_snippet_centres_on_the_match_and_marks_cuts() -> None:
    text = "word " * 100 + "TARGET " + "word " * 100
    at = text.index("TARGET")
    cut = snippet(text, at, at + 6, width=60)
    assert "TARGET" in cut
    assert cut.startswith("…") and cut.endswith("…")
    assert len(cut) <= 64
    assert snippet("short text", 0, 5) == "short text"


def test_mask_url_hides_credentials_anywhere_in_text() -> None:
    assert mask_url("http://bob:hunter2@example.org/feed") == "http://***@example.org/feed"
    msg = "failed for https://user:pw@h.example/x and more"
    assert "pw" not in mask_url(msg)
    assert mask_url("http://example.org/a@b") == "http://example.org/a@b"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # A password with an @ or a blank in it (an unencoded secret): the client takes
        # the userinfo up to the last @ before the path, so that is what goes.
        ("http://bob:hunter@2secret@example.org/feed", "http://***@example.org/feed"),
        ("http://bob:pass word@example.org/feed", "http://***@example.org/feed"),
        ("http://bob:pa?ss@example.org/feed", "http://***@example.org/feed"),
        ("http://bob:pa#ss@example.org/feed", "http://***@example.org/feed"),
        # A / in it ends the authority early, at no host (or at what reads as a host and
        # a port: "bob:" or "bob:2024"): masked to the last @ before a blank.
        ("http://bob:pa/ss@example.org/feed", "http://***@example.org/feed"),
        ("https://bob:/s3cret@example.org/feed", "https://***@example.org/feed"),
        ("https://bob:2024/s3cret@example.org/feed", "https://***@example.org/feed"),
        # An @ in the password and then / ? #: masked to the last @ of the URL.
        ("https://admin:P@ssw0rd/2024@feeds.example.org/rss", "https://***@feeds.example.org/rss"),
        ("https://admin:P@ss?word@feeds.example.org/rss", "https://***@feeds.example.org/rss"),
        ("https://user:12 34@example.org/feed", "https://***@example.org/feed"),
        ("https://user:Q/ @example.org/feed", "https://***@example.org/feed"),
        # ... which masks a dotless host's path @ after a port too: the safe side.
        ("http://localhost:8080/@newsroom", "http://***@newsroom"),
        # A real host with a port, and an @ in its path or query: nothing to mask.
        (
            "https://social.example.org:8443/@newsroom.rss",
            "https://social.example.org:8443/@newsroom.rss",
        ),
        (
            "http://example.org:8080/feed?to=me@example.org",
            "http://example.org:8080/feed?to=me@example.org",
        ),
        ("http://[::1]:8080/a@b", "http://[::1]:8080/a@b"),
        # Scheme-relative, as a Location header may be.
        ("redirected to //bob:s3cret@bad host/", "redirected to //***@bad host/"),
        (
            "see http://a:b@x.org/ and https://c:d@y.org/z",
            "see http://***@x.org/ and https://***@y.org/z",
        ),
        # No userinfo: unchanged, @ in paths included.
        ("https://medium.com/feed/@newsroom", "https://medium.com/feed/@newsroom"),
        ("http://localhost/@newsroom", "http://localhost/@newsroom"),
        (
            "https://example.org?author=jane@example.org",
            "https://example.org?author=jane@example.org",
        ),
        (
            "mailtos://smtp.example.org?to=desk@example.org",
            "mailtos://smtp.example.org?to=desk@example.org",
        ),
        # With credentials, a later @ (here the recipient) is masked too: the safe side.
        ("mailtos://u:pw@smtp.example.org?to=desk@example.org", "mailtos://***@example.org"),
        # Free text with an @ after a URL with no path: masked, the safe side.
        ("shared https://t.co by @newsroom", "shared https://***@newsroom"),
        # What an older version stored, masked again: the same as masking the original.
        ("https://***@ss@example.org/feed", "https://***@example.org/feed"),
        ("json://127.0.0.1:9000/hook", "json://127.0.0.1:9000/hook"),
        ("no url here, mail desk@example.org", "no url here, mail desk@example.org"),
        (
            "line one http://x.org\nwrite to desk@example.org",
            "line one http://x.org\nwrite to desk@example.org",
        ),
    ],
)
def test_mask_url_takes_what_a_client_would_send_as_userinfo(text: str, masked: str) -> None:
    assert mask_url(text) == masked
    assert mask_url(masked) == masked


def test_every_log_line_and_traceback_the_daemon_writes_is_masked() -> None:
    """The last guard behind each message's own masking: a library's exception text
    may quote a feed URL whole."""
    formatter = MaskedFormatter("%(levelname)s %(message)s")
    try:
        raise ValueError("cannot fetch http://reader:s3cret@example.org/feed")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "poll %s", ("https://u:pw0rd@h.org/",), True
        )
        record.exc_info = sys.exc_info()
    line = formatter.format(record)
    assert "https://***@h.org/" in line and "http://***@example.org/feed" in line
    assert "s3cret" not in line and "pw0rd" not in line


def test_a_poll_outlasting_its_interval_is_not_a_warning_at_every_tick() -> None:
    from monitor.cli.logs import expected

    def record(name: str, message: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, __file__, 1, message, (), None)

    skipped = 'Execution of job "%s" skipped: maximum number of running instances reached (%d)'
    assert not expected(record("apscheduler.scheduler", skipped))
    assert expected(record("apscheduler.scheduler", "Run time of job was missed by 0:00:05"))
    assert expected(record("monitor.pipeline", "maximum number of running instances reached"))
