"""Rows of Kaldi compressed matrices decoded in place: bit for bit kaldiio's decode of the whole matrix,
on real fbank written by `trkd fbank --compress` and by kaldiio with every compression method."""

from __future__ import annotations

import io
import os

import kaldiio
import numpy as np
import pytest

from data_helpers import make_data_dir
from train_helpers import run_cli
from trkd.data.chunks import ChunkDataset, crop_or_repeat, load_feats, read_chunk
from trkd.data.kaldi_dir import read_kv
from trkd.errors import InputError
from trkd.utils.compressed import HEAD_BYTES, header_of, read_rows


@pytest.fixture(scope="module")
def fbank(tmp_path_factory):
    """`trkd fbank` of the same WAVs twice: float32 (`plain`) and `--compress` (`cm`)."""
    tmp = tmp_path_factory.mktemp("compressed")
    plain = make_data_dir(tmp, n_spk=2, n_utt=3)
    cm = tmp / "cm"
    cm.mkdir()
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        (cm / name).write_text((plain / name).read_text())
    for d, extra in ((plain, ()), (cm, ("--compress",))):
        r = run_cli("fbank", d, "--num-mel-bins", "40", "--seed", "1", *extra)
        assert r.exit_code == 0, repr(r.exception)
    return plain, cm


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.dtype == b.dtype == np.float32 and a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def decode(path, at, start, stop):
    """The rows through the module's own API, the matrix's `\\0B` at byte `at` of `path`."""
    fd = os.open(path, os.O_RDONLY)
    try:
        header = header_of(os.pread(fd, HEAD_BYTES, at))
        return read_rows(fd, at, header, start, stop), header
    finally:
        os.close(fd)


def test_rows_of_fbank_compress_arks_are_kaldiios_bit_for_bit(fbank):
    _, cm = fbank
    for utt, rx in read_kv(cm / "feats.scp").items():
        whole = kaldiio.load_mat(rx)
        n = whole.shape[0]
        path, offset = rx.rsplit(":", 1)
        for start, stop in ((0, n), (0, 1), (n - 1, n), (n // 3, n // 3 + 50), (17, 17)):
            rows, header = decode(path, int(offset), start, stop)
            assert header.token == "CM" and (header.rows, header.cols) == whole.shape
            assert same_bits(rows, whole[start:stop]), (utt, start, stop)
            assert rows.flags.f_contiguous == whole.flags.f_contiguous  # a mean over frames depends on it
        assert same_bits(read_chunk(rx, n // 2 - 25, 50), whole[n // 2 - 25:n // 2 + 25])


def test_fbank_compression_method_5_writes_cm3_and_a_bad_method_writes_nothing(fbank, tmp_path):
    plain, cm = fbank
    d = tmp_path / "cm3"
    d.mkdir()
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        (d / name).write_text((plain / name).read_text())
    r = run_cli("fbank", d, "--num-mel-bins", "40", "--seed", "1", "--compress", "--compression-method", "9")
    assert r.exit_code == 1 and str(r.exception) == "--compression-method 9: Kaldi's compression methods are 1 (automatic) to 7"
    assert sorted(p.name for p in d.iterdir()) == ["spk2utt", "utt2spk", "wav.scp"]
    r = run_cli("fbank", d, "--num-mel-bins", "40", "--seed", "1", "--compress", "--compression-method", "5")
    assert r.exit_code == 0, repr(r.exception)
    exact = {u: load_feats(rx) for u, rx in read_kv(plain / "feats.scp").items()}
    for utt, rx in read_kv(d / "feats.scp").items():
        path, offset = rx.rsplit(":", 1)
        rows, header = decode(path, int(offset), 0, exact[utt].shape[0])
        assert header.token == "CM3" and same_bits(rows, kaldiio.load_mat(rx))
        # one byte over the utterance's range: within half a step of the float32 values
        assert np.abs(rows - exact[utt]).max() <= np.ptp(exact[utt]) / 255 / 2 * 1.01
    assert os.path.getsize(next(d.glob("feats/*.ark"))) < 1.05 * os.path.getsize(next(cm.glob("feats/*.ark")))


@pytest.mark.parametrize("method", range(1, 8))
def test_every_kaldi_compression_method_decodes_as_kaldiio_does(fbank, method, tmp_path):
    plain, _ = fbank
    mats = [load_feats(rx) for rx in read_kv(plain / "feats.scp").values()][:3]
    mats.append(mats[0][:6])  # method 1 stores a matrix of 8 rows or fewer as CM2
    if method == 7:  # kOneByteZeroOne quantises [0, 1]
        mats = [(m - m.min()) / np.ptp(m) for m in mats]
    for mat in mats:
        buf = io.BytesIO()
        kaldiio.save_ark(buf, {"u": mat}, compression_method=method)
        whole = dict(kaldiio.load_ark(io.BytesIO(buf.getvalue())))["u"]
        n = whole.shape[0]
        for start, stop in ((0, n), (n // 4, n // 4 + min(n // 2, 200)), (n - 2, n)):
            ark = tmp_path / "m.ark"
            ark.write_bytes(buf.getvalue())
            rows, header = decode(ark, 2, start, stop)  # after the key and its space
            assert same_bits(rows, whole[start:stop]), (method, header.token, start, stop)


def test_chunk_items_are_those_of_the_whole_read(fbank):
    """What training sees from a compressed ark is unchanged: normalised chunks, short utterances repeated."""
    _, cm = fbank
    ds = ChunkDataset(cm, 150, seed=3)
    assert ds.lengths.min() < 150 < ds.lengths.max()  # both kinds of chunk
    for u, start, seed in ds.epoch_items(1):
        whole = crop_or_repeat(load_feats(ds.rx[u]), start, 150)
        feats = ds[(u, start, seed)]["feats"].numpy()
        assert same_bits(feats, whole - whole.mean(axis=0, keepdims=True))


def test_a_truncated_compressed_ark_names_the_scp(fbank, tmp_path):
    _, cm = fbank
    rx = read_kv(cm / "feats.scp")["spk1-utt1"]
    path, offset = rx.rsplit(":", 1)
    with open(path, "rb") as f:
        f.seek(int(offset))
        blob = f.read(5 + 16 + 8 * 40 + 100)  # the headers, then 100 of the values
    cut = tmp_path / "cut.ark"
    cut.write_bytes(blob)
    with pytest.raises(InputError, match="my/feats.scp"):
        read_chunk(f"{cut}:0", 10, 50, source="my/feats.scp")
    with pytest.raises(ValueError, match="truncated"):
        decode(cut, 0, 10, 60)
