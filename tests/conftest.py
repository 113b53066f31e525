"""The kit's own tests.  ``interrupted/`` holds a test that the cleanup tests
run in a child pytest and interrupt; it is not collected here."""

import email.utils
import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

collect_ignore = ["interrupted", "stub_ext", "data", "zoo"]

#: a test that uses one of these needs a server of the target under test: it
#: runs once per target (tox's pg*/local environments); the others run once
TARGETED = {"target", "pg_target", "bgwc_config"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if TARGETED & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.target)


class AptSigner:
    """A throwaway OpenPGP key (``key``, ASCII-armored) that indexes and signs flat apt repositories."""

    def __init__(self, tmp: Path) -> None:
        self.home = tmp / "gnupg"
        self.home.mkdir(mode=0o700)
        self.key = tmp / "key.asc"
        self._gpg(
            "--passphrase", "", "--quick-gen-key", "bgwc test <bgwc@invalid>", "ed25519", "sign", "never"
        )
        self._gpg("--armor", "--output", str(self.key), "--export")

    def _gpg(self, *argv: str) -> None:
        subprocess.run(
            ["gpg", "--homedir", str(self.home), "--batch", *argv], check=True, capture_output=True
        )

    def sign_flat(self, repo: Path) -> None:
        """Index the .debs in ``repo`` (Packages), and write its Release and InRelease (signed)."""
        packages = subprocess.run(
            ["dpkg-scanpackages", "-m", "."], cwd=repo, check=True, capture_output=True
        ).stdout
        (repo / "Packages").write_bytes(packages)
        digest = hashlib.sha256(packages).hexdigest()
        date = email.utils.formatdate(usegmt=True)
        head = f"Origin: bgwc-test\nLabel: bgwc-test\nDate: {date}\n"
        (repo / "Release").write_text(f"{head}SHA256:\n {digest} {len(packages)} Packages\n")
        self._gpg("--output", str(repo / "InRelease"), "--clearsign", str(repo / "Release"))

    def close(self) -> None:
        """Stop the agent gpg started for this home."""
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], check=False)


@pytest.fixture
def apt_signer(tmp_path: Path) -> Iterator[AptSigner]:
    signer = AptSigner(tmp_path)
    try:
        yield signer
    finally:
        signer.close()
