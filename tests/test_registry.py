from pathlib import Path

import pytest

from pipeline import config
from pipeline.ingest import registry


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "feeds.yaml"
    p.write_text(text)
    return p


def test_bundled_registries_load():
    prod = registry.load(config.FEEDS_DIR / "finance.yaml")
    assert len(prod) >= 10 and all(s.url.startswith("https://") for s in prod)
    demo = registry.load(config.FEEDS_DIR / "demo.yaml")
    assert all(Path(s.url.removeprefix("file://")).is_file() for s in demo)


def test_relative_file_urls_resolve_against_the_registry(tmp_path):
    (tmp_path / "x.xml").write_text("<rss/>")
    specs = registry.load(
        write(tmp_path, "feeds:\n  - {name: x, url: 'file:x.xml', timezone: Europe/Paris, dedupe_titles: false}\n")
    )
    assert specs[0].url == (tmp_path / "x.xml").as_uri()
    assert specs[0].timezone == "Europe/Paris" and specs[0].dedupe_titles is False


@pytest.mark.parametrize(
    "text, message",
    [
        ("nope: []", "top-level 'feeds:'"),
        ("feeds:\n  - {name: a}\n", "'url' is required"),
        ("feeds:\n  - {url: 'https://a'}\n", "'name' is required"),
        ("feeds:\n  - {name: a, url: 'https://a'}\n  - {name: a, url: 'https://b'}\n", "duplicate feed name"),
        ("feeds:\n  - {name: a, url: 'https://a', colour: red}\n", "unknown keys"),
        ("feeds:\n  - {name: a, url: 'ftp://a'}\n", "unsupported URL scheme"),
        ("feeds: [\n", "cannot read"),
    ],
)
def test_bad_registries_are_rejected_clearly(tmp_path, text, message):
    with pytest.raises(registry.RegistryError, match=message):
        registry.load(write(tmp_path, text))
