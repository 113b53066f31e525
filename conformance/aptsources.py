"""Extra apt sources (e.g. apt.postgresql.org, or a local directory) that
server and extension packages may come from, each with the key that signs
it.  Named by a profile (``[[install.apt_source]]``) or on the command line
(``--apt-source '[signed-by=KEY] URI SUITE [COMPONENT...]'``, repeatable).
Images add them, each ``signed-by`` its key, below the server's layer
(``images.add_apt_sources``), so both PostgreSQL and the extension's
packages can come from them; the sources, their keys and a local
directory's files are inputs of the image's hash.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from conformance.errors import KitError

#: where sources, keys and local repositories go in an image
IMAGE_DIR = "/usr/share/bgwc-apt"
ARMOR = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"


@dataclass(frozen=True)
class AptSource:
    """One apt source: ``suite`` and ``components`` may hold ``{codename}``
    (the image's Debian suite, e.g. ``trixie``) and ``{major}``; a suite that
    ends in ``/`` with no components is a flat repository."""

    uri: str  # http(s)://..., or file:/abs/dir (a local directory, copied into the image)
    suite: str
    components: tuple[str, ...] = ()
    key: Path | None = None  # the signing key: ASCII-armored or a binary keyring
    trusted: bool = False  # [trusted=yes]: no signature checked

    @property
    def directory(self) -> Path | None:
        """The local directory of a ``file:`` source."""
        if not self.uri.startswith("file:"):
            return None
        return Path("/" + self.uri.removeprefix("file:").lstrip("/"))

    @property
    def flat(self) -> bool:
        return self.suite.endswith("/") and not self.components

    def suite_for(self, codename: str, major: int | str) -> str:
        return _substitute(self.suite, {"{codename}": codename, "{major}": str(major)})

    def components_for(self, codename: str, major: int | str) -> tuple[str, ...]:
        sub = {"{codename}": codename, "{major}": str(major)}
        return tuple(_substitute(c, sub) for c in self.components)

    def describe(self) -> str:
        """As the user wrote it, for messages."""
        opt = f"[signed-by={self.key}] " if self.key else "[trusted=yes] " if self.trusted else ""
        return f"{opt}{self.uri} {' '.join((self.suite, *self.components))}"

    def key_is_armored(self) -> bool:
        assert self.key is not None
        return self.key.read_bytes().lstrip().startswith(ARMOR)

    def digest(self) -> str:
        """What the image gets from this source: its spelling, its key's bytes, a local directory's files."""
        h = hashlib.sha256(self.describe().encode() + b"\0")
        if self.key is not None:
            h.update(self.key.read_bytes() + b"\0")
        if (d := self.directory) is not None:
            for p in sorted(d.rglob("*")):
                if p.is_file():
                    h.update(str(p.relative_to(d)).encode() + b"\0" + p.read_bytes() + b"\0")
        return h.hexdigest()


def _substitute(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text = text.replace(name, value)
    return text


def make(
    uri: str, suite: str, components: tuple[str, ...], key: str | None, trusted: bool, base: Path, where: str
) -> AptSource:
    """A validated source; ``key`` and a relative ``file:`` directory are relative to ``base``;
    a problem is a KitError starting with ``where``."""
    if not uri or not suite:
        raise KitError(f"{where}: needs a URI and a suite")
    if not uri.startswith(("http://", "https://", "file:")):
        raise KitError(f"{where}: URI {uri!r}: give http://, https:// or file:DIR")
    if uri.startswith("file:"):
        path = Path(uri.removeprefix("file:").removeprefix("//"))
        path = (base / path).resolve()
        if not path.is_dir():
            raise KitError(f"{where}: no directory {path}")
        uri = f"file:{path}"
    if suite.endswith("/") == bool(components):
        raise KitError(
            f"{where}: give a suite and components (e.g. '{{codename}}-pgdg main'), "
            "or a flat repository's path ending in '/' alone (e.g. './')"
        )
    if (key is None) == (not trusted):
        raise KitError(f"{where}: give the key that signs it (signed-by / key = PATH), or trusted = true")
    key_path = None
    if key is not None:
        key_path = (base / key).resolve()
        if not key_path.is_file():
            raise KitError(f"{where}: no key file {key_path}")
    return AptSource(uri.rstrip("/"), suite, components, key_path, trusted)


def parse_line(text: str, base: Path) -> AptSource:
    """``[signed-by=KEY] URI SUITE [COMPONENT...]`` (``deb `` before it is allowed; ``[trusted=yes]``
    instead of a key), as ``--apt-source`` takes it; KEY and a relative ``file:`` are relative to ``base``."""
    where = f"--apt-source {text!r}"
    words = text.split()
    if words[:1] == ["deb"]:
        words = words[1:]
    key, trusted = None, False
    if words and words[0].startswith("["):
        opts = []
        while words:
            word = words.pop(0)
            opts.append(word.strip("[]"))
            if word.endswith("]"):
                break
        for opt in filter(None, opts):
            name, _, value = opt.partition("=")
            if name == "signed-by" and value:
                key = value
            elif name == "trusted" and value == "yes":
                trusted = True
            else:
                raise KitError(f"{where}: option {opt!r}: give [signed-by=KEY] or [trusted=yes]")
    if len(words) < 2:
        raise KitError(f"{where}: give '[signed-by=KEY] URI SUITE [COMPONENT...]'")
    return make(words[0], words[1], tuple(words[2:]), key, trusted, base, where)


def parse_lines(text: str, base: Path) -> tuple[AptSource, ...]:
    """Sources separated by ``;`` (how the option's values travel, e.g. as --bgwc-apt-source)."""
    return tuple(parse_line(part.strip(), base) for part in text.split(";") if part.strip())


def render(sources: tuple[AptSource, ...], codename: str, major: int, out: Path) -> str:
    """Stage ``sources`` for an image in ``out`` (copied to IMAGE_DIR): their keys, local
    directories, and ``bgwc.list``, whose text is returned."""
    lines = []
    out.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(sources):
        opts = "trusted=yes"
        if src.key is not None:
            name = f"key-{i}.{'asc' if src.key_is_armored() else 'gpg'}"  # apt tells them by the suffix
            shutil.copy(src.key, out / name)
            opts = f"signed-by={IMAGE_DIR}/{name}"
        uri = src.uri
        if (d := src.directory) is not None:
            shutil.copytree(d, out / f"repo-{i}")
            uri = f"file:{IMAGE_DIR}/repo-{i}"
        words = (src.suite_for(codename, major), *src.components_for(codename, major))
        lines.append(f"deb [{opts}] {uri} {' '.join(words)}")
    text = "\n".join(lines) + "\n"
    (out / "bgwc.list").write_text(text)
    return text
