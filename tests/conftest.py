"""Shared test set-up: no network, quiet tokenizers, tiny models built from configs for every architecture family.

Fixtures here are plain factories; each test module builds what it needs (on CPU or the meta device).
"""

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# peftlab's own cache (machine calibration, converted MobileNetV2 weights, VQA embeddings): one folder for the test
# runs of this user, kept between sessions for speed, never the user's ~/.cache/peftlab
os.environ.setdefault("PEFTLAB_CACHE", str(Path(tempfile.gettempdir()) / f"peftlab-test-cache-{os.getuid()}"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL server in a temp folder (Debian's postgresql package); skipped where there is none."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("no PostgreSQL here (apt-get install postgresql gives initdb and pg_ctl)")
    pytest.importorskip("psycopg2", reason="pip install psycopg2-binary for Optuna's PostgreSQL storage")
    as_user = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user the package creates
        if (
            shutil.which("runuser") is None
            or subprocess.run(["id", "postgres"], capture_output=True).returncode
        ):
            pytest.skip("running as root without a postgres user to start the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="peftlab-pg-"))
    os.chmod(root, 0o777)
    data, port = root / "data", _free_port()
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust"], check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"], check=True,
                   capture_output=True)  # fmt: skip
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
