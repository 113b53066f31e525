"""The reference extension's own regression tests (make installcheck), run
beside the server of every target."""

from __future__ import annotations

import shlex
from pathlib import PurePosixPath

import pytest

from conformance.config import KitConfig
from conformance.targets import Target


def test_reference_ext_installcheck(target: Target, bgwc_config: KitConfig) -> None:
    if bgwc_config.extension.name != "bgw_pool":
        pytest.skip("not applicable: the regression tests belong to the reference extension")
    work = str(PurePosixPath(target.datadir).parent / "regress")
    target.run(
        ["sh", "-c", f"rm -rf {work} && cp -r {target.ext_build_dir} {work} && chown -R postgres {work}"],
        user="root",
    )
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in target.libpq_env().items())
    res = target.exec(
        [
            "sh",
            "-c",
            f"cd {work} && {env} make PG_CONFIG={target.pg_config} with_llvm=no "
            f"installcheck || {{ cat regression.diffs; exit 1; }}",
        ]
    )
    target.run(["rm", "-rf", work], user="root")
    assert res.code == 0, res.output[-6000:]
    assert "All " in res.output or "ok" in res.output, res.output[-2000:]
