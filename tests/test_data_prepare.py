"""lrjax.data.prepare as a new user meets it: without raw files and without network it fails
within seconds, saying which files to fetch and where to put them (through the CLI's normal error
path); with raw files it prints one plain line per step, no progress bars."""

import os
import socket
import threading
import time

import pytest

from lrjax import cli
from lrjax._validation import ConfigError
from lrjax.data import catalog, load_dataset, prepare
from lrjax.data.prepare import DownloadUnavailableError, prepare_dataset

pytest.importorskip("tensorflow_datasets")

EXPECTED = {
    "cifar10": ("https://www.cs.toronto.edu/~kriz/", ["cifar-10-binary.tar.gz"]),
    "mnist": ("https://storage.googleapis.com/cvdf-datasets/mnist/", list(catalog._MNIST_FILES)),
    "fashion_mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        list(catalog._MNIST_FILES),
    ),
}
PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


@pytest.fixture
def offline(monkeypatch):
    """No raw dir anywhere and no download host reachable; records the hosts asked about."""
    asked = []
    for var in ("LRJAX_RAW_DIR", *PROXY_VARS):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(prepare, "host_reachable", lambda host, port: asked.append(host) or False)
    return asked


@pytest.mark.parametrize("name", ["cifar10", "mnist", "fashion_mnist"])
def test_no_raw_files_and_no_network_fails_fast_saying_what_to_download(name, tmp_path, offline):
    data = tmp_path / "data"
    start = time.perf_counter()
    with pytest.raises(DownloadUnavailableError) as info:
        prepare_dataset(name, data_dir=data)
    assert time.perf_counter() - start < 10  # tfds's own retries take minutes
    assert isinstance(info.value, ConfigError)
    message = str(info.value)
    base, files = EXPECTED[name]
    assert offline == [base.split("/")[2]]
    for f in files:
        assert base + f in message
    assert f"in {data / 'raw' / name}/" in message
    assert f"--raw-dir {data / 'raw'}" in message and "LRJAX_RAW_DIR" in message
    assert not data.exists()  # nothing downloaded, no temporary files


def test_cli_reports_it_as_an_error_with_exit_code_2(tmp_path, offline, capsys):
    data = tmp_path / "data"
    assert cli.main(["data", "prepare", "cifar10", "--data-dir", str(data)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("lrjax: error: cannot prepare cifar10: no raw files were given")
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in err
    assert f"lrjax data prepare cifar10 --raw-dir {data / 'raw'}" in err
    assert not data.exists()


def test_files_already_where_tfds_looks_need_no_network(tmp_path, offline):
    files = prepare.registered_files("cifar10")
    tfds_dir = tmp_path / "tfds"
    assert not prepare._downloads_present(files, tfds_dir, "cifar10")
    (tfds_dir / "downloads" / "manual").mkdir(parents=True)
    (tfds_dir / "downloads" / "manual" / "cifar-10-binary.tar.gz").touch()
    assert prepare._downloads_present(files, tfds_dir, "cifar10")


def test_host_reachable_is_bounded_in_time(monkeypatch):
    with socket.socket() as server:  # a listening local port answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert prepare.host_reachable("127.0.0.1", port, timeout=2.0)
    start = time.perf_counter()  # a closed local port does not
    assert not prepare.host_reachable("127.0.0.1", port, timeout=2.0)
    assert time.perf_counter() - start < 2.0
    # a name lookup that hangs (a resolver without network) is abandoned after the timeout
    hang = threading.Event()

    def lookup_hangs(*args, **kwargs):
        hang.wait(10)
        raise OSError("name resolution timed out")

    monkeypatch.setattr(socket, "create_connection", lookup_hangs)
    start = time.perf_counter()
    assert not prepare.host_reachable("example.invalid", 443, timeout=0.2)
    assert time.perf_counter() - start < 1.0
    hang.set()


def test_reachability_checks_the_proxy_a_download_would_use(monkeypatch):
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    assert prepare._connect_target(url) == ("www.cs.toronto.edu", 443)
    assert prepare._connect_target("http://example.org/a.gz") == ("example.org", 80)
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    assert prepare._connect_target(url) == ("proxy.example", 3128)
    monkeypatch.setenv("no_proxy", "cs.toronto.edu")
    assert prepare._connect_target(url) == ("www.cs.toronto.edu", 443)


def test_loader_subprocess_passes_the_whole_message_back(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    with pytest.raises(ConfigError) as info:
        load_dataset("cifar10", data_dir=tmp_path / "data", raw_dir=raw)
    message = str(info.value)
    assert message.startswith("preparing cifar10 failed: raw_dir=")
    assert "lacks 'cifar-10-binary.tar.gz'" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in message
    assert "Traceback" not in message


@pytest.mark.slow
def test_preparing_mnist_prints_one_plain_line_per_step(tmp_path, shared_data, capfd):
    before = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    path = prepare_dataset("mnist", raw_dir=shared_data, data_dir=tmp_path)
    out, err = capfd.readouterr()
    lines = out.splitlines()
    assert len(lines) == 5, out
    assert lines[0].startswith("mnist: preparing with tfds ") and "checksums ok" in lines[0]
    assert lines[1].startswith("mnist: tfds prepared in ")
    assert lines[2].startswith("mnist: train 60,000 examples 28x28x1 ... done")
    assert lines[3].startswith("mnist: test 10,000 examples 28x28x1 ... done")
    assert lines[4].startswith(f"mnist: cache {path} (") and "MiB" in lines[4]
    for text in (out, err):
        assert "\r" not in text and "\x1b" not in text
    assert "Dl Completed" not in err and "Generating" not in err and "Extraction" not in err
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == before
