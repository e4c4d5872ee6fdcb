"""Real data sets, each read from a few files written here in its release's on-disk format.

Every image set is checked against torchvision's own reading of the same files (its dataset
class, or for CIFAR its CIFAR10/CIFAR100 arrays), so a format that torchvision reads is one these
loaders read the same way. Nothing is downloaded.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import struct

import numpy as np
import pytest

from kdscale import data
from kdscale.config import DataSpec
from kdscale.data import cifar, cifar5m, images
from kdscale.data.subsets import rng_for, stratified_order
from kdscale.errors import SpecError


def one_line_error(call, match: str) -> str:
    with pytest.raises(SpecError) as caught:
        call()
    message = str(caught.value)
    assert match in message and "\n" not in message, message
    return message


def assert_stratified(labels: np.ndarray, classes: int) -> None:
    """Every prefix holds each class's share to within one sample (balanced classes)."""
    for n in range(1, len(labels) + 1):
        counts = np.bincount(labels[:n], minlength=classes)
        assert counts.max() - counts.min() <= 1, (n, counts)


# ---------------------------------------------------------------- CIFAR-10 and CIFAR-100

def balanced_labels(n: int, classes: int, rng) -> np.ndarray:
    return rng.permutation(np.arange(n) % classes)


class Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle did for the CIFAR releases: every string (dict keys, the
    array's raw bytes, its dtype's 'u1' and '|') is a Python 2 `str` (the BINSTRING opcodes),
    which Python 3 reads as bytes with encoding="bytes" and as str with "latin1" (torchvision's)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = dispatch[str] = save_python2_str


def dump_python2(obj, path):
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    # NumPy 1 (and so the releases) named the array rebuilder numpy.core.multiarray._reconstruct.
    path.write_bytes(buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root, per_batch=20, n_test=20, seed=0):
    """cifar-10-batches-py/ as the release has it: Python 2 pickles of dicts with str keys."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        batch = {b"batch_label": name.encode(), b"labels": balanced_labels(n, 10, rng).tolist(),
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"filenames": [f"{name}_{j}.png".encode() for j in range(n)]}
        dump_python2(batch, folder / name)
        written[name] = batch
    dump_python2({b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_cases_per_batch": per_batch,
                  b"num_vis": 3072}, folder / "batches.meta")
    x_train = np.concatenate([written[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    y_train = np.concatenate([written[f"data_batch_{i}"][b"labels"] for i in range(1, 6)])
    return x_train, y_train, written["test_batch"][b"data"], np.array(written["test_batch"][b"labels"])


def write_cifar100(root, n_train=200, n_test=100, seed=1):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = []
    for name, n in [("train", n_train), ("test", n_test)]:
        fine = balanced_labels(n, 100, rng)
        batch = {b"filenames": [f"{j}.png".encode() for j in range(n)], b"batch_label": name.encode(),
                 b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist(),
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        dump_python2(batch, folder / name)
        out += [batch[b"data"], fine]
    dump_python2({b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                  b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}, folder / "meta")
    return out


def skip_torchvision_md5(monkeypatch):
    """torchvision md5-checks each CIFAR file against the release's; files written here cannot
    match, so its check becomes an existence check."""
    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


@pytest.fixture
def small_cifar(monkeypatch):
    """The releases' sizes scaled down to the files written here."""
    layouts = cifar.LAYOUTS
    monkeypatch.setitem(layouts, "cifar10", dataclasses.replace(layouts["cifar10"], n_train=100, n_test=20))
    monkeypatch.setitem(layouts, "cifar100", dataclasses.replace(layouts["cifar100"], n_train=200, n_test=100))


def normalised(x_uint8_nchw, mean, std):
    return ((x_uint8_nchw / 255.0 - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(std, (1, 3, 1, 1)))


def test_cifar10_reads_the_python_batches_as_torchvision_does(tmp_path, small_cifar, monkeypatch):
    x_train, y_train, x_test, y_test = write_cifar10(tmp_path)
    spec = DataSpec("cifar10", n_teacher=30, root=str(tmp_path))
    info = data.info(spec)
    assert (info.input_shape, info.num_classes, info.pool_size, info.n_test) == ((3, 32, 32), 10, 100, 20)

    loaded = data.load(spec, 100)
    assert loaded.x_pool.shape == (100, 3, 32, 32) and loaded.x_pool.dtype == np.float32
    assert loaded.y_pool.dtype == np.int64 and loaded.x_test.shape == (20, 3, 32, 32)
    # The pool is fixed_stream's order of the training batches, normalised by the constants.
    x_expected, y_expected = data.fixed_stream(x_train.reshape(-1, 3, 32, 32), y_train, 0)
    np.testing.assert_array_equal(loaded.y_pool, y_expected)
    np.testing.assert_allclose(loaded.x_pool, normalised(x_expected, cifar.CIFAR10_MEAN, cifar.CIFAR10_STD),
                               rtol=0, atol=1e-5)
    np.testing.assert_array_equal(loaded.y_test, y_test)
    np.testing.assert_allclose(loaded.x_test, normalised(x_test.reshape(-1, 3, 32, 32), cifar.CIFAR10_MEAN,
                                                         cifar.CIFAR10_STD), rtol=0, atol=1e-5)

    # torchvision's CIFAR10 reads the same files to the same images and labels.
    import torchvision

    skip_torchvision_md5(monkeypatch)
    assert torchvision.datasets.CIFAR10(str(tmp_path), train=True, download=False).classes == CIFAR10_CLASSES
    reference = torchvision.datasets.CIFAR10(str(tmp_path), train=True, download=False)
    raw, labels = cifar.read_split(tmp_path, cifar.LAYOUTS["cifar10"], cifar.LAYOUTS["cifar10"].train_files, 100)
    np.testing.assert_array_equal(raw, reference.data.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(labels, reference.targets)


def test_cifar10_stream_is_deterministic_stratified_and_prefix_closed(tmp_path, small_cifar):
    write_cifar10(tmp_path)
    spec = DataSpec("cifar10", n_teacher=30, root=str(tmp_path))
    full, again = data.load(spec, 100), data.load(spec, 100)
    np.testing.assert_array_equal(full.x_pool, again.x_pool)
    short = data.load(spec, 30)
    np.testing.assert_array_equal(short.x_pool, full.x_pool[:30])
    assert_stratified(full.y_pool, 10)
    other_seed = data.load(DataSpec("cifar10", n_teacher=30, seed=1, root=str(tmp_path)), 100)
    assert not np.array_equal(other_seed.y_pool, full.y_pool)
    assert sorted(other_seed.y_pool.tolist()) == sorted(full.y_pool.tolist())


def test_cifar10_errors_are_one_line_and_name_the_path(tmp_path, small_cifar):
    write_cifar10(tmp_path)
    spec = DataSpec("cifar10", n_teacher=30, root=str(tmp_path))
    data.check(spec, [1.0, 3.3])
    one_line_error(lambda: data.check(spec, [3.4]), "maximum kappa is 3.333")
    absent = tmp_path / "absent"
    one_line_error(lambda: data.info(DataSpec("cifar10", root=str(absent))),
                   f"expects the python-version batches at {absent}/cifar-10-batches-py/data_batch_1..5")
    one_line_error(lambda: data.info(DataSpec("cifar10")), "data.root is unset")
    one_line_error(lambda: data.info(DataSpec("cifar10", n_test=5, root=str(tmp_path))), "data.n_test=5")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    one_line_error(lambda: data.info(spec), f"missing: {tmp_path}/cifar-10-batches-py/data_batch_3")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    one_line_error(lambda: data.load(spec, 30), "data_batch_3 is not a CIFAR python-version batch")


def test_cifar_sizes_are_the_releases():
    assert [(n.n_train, n.n_test, n.num_classes) for n in cifar.LAYOUTS.values()] == [(50_000, 10_000, 10),
                                                                                     (50_000, 10_000, 100)]


def test_cifar100_reads_fine_labels(tmp_path, small_cifar, monkeypatch):
    x_train, y_train, x_test, y_test = write_cifar100(tmp_path)
    spec = DataSpec("cifar100", n_teacher=100, root=str(tmp_path))
    loaded = data.load(spec, 200)
    assert loaded.info.num_classes == 100 and loaded.x_pool.shape == (200, 3, 32, 32)
    x_expected, y_expected = data.fixed_stream(x_train.reshape(-1, 3, 32, 32), y_train, 0)
    np.testing.assert_array_equal(loaded.y_pool, y_expected)
    np.testing.assert_allclose(loaded.x_pool, normalised(x_expected, cifar.CIFAR100_MEAN, cifar.CIFAR100_STD),
                               rtol=0, atol=1e-5)
    np.testing.assert_array_equal(loaded.y_test, y_test)
    assert_stratified(loaded.y_pool, 100)

    import torchvision

    skip_torchvision_md5(monkeypatch)
    reference = torchvision.datasets.CIFAR100(str(tmp_path), train=False, download=False)
    np.testing.assert_array_equal(loaded.y_test, reference.targets)
    np.testing.assert_allclose(loaded.x_test, normalised(reference.data.transpose(0, 3, 1, 2), cifar.CIFAR100_MEAN,
                                                         cifar.CIFAR100_STD), rtol=0, atol=1e-5)
    one_line_error(lambda: data.check(spec, [2.01]), "maximum kappa is 2")


# ---------------------------------------------------------------- CIFAR-5m

def write_cifar5m_part(path, n, seed, compressed=False):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    # balanced within each block of 30 (the BLOCK the tests set), so every block's prefixes are too
    y = np.concatenate([balanced_labels(min(30, n - s), 10, rng) for s in range(0, n, 30)]).astype(np.int64)
    (np.savez_compressed if compressed else np.savez)(path, X=x, Y=y)
    return x, y


@pytest.fixture
def cifar5m_root(tmp_path, small_cifar, monkeypatch):
    """Parts 0, 1, 2 and 5 (3 and 4 absent), small blocks, and CIFAR-10's test batch."""
    monkeypatch.setattr(cifar5m, "BLOCK", 30)
    parts = [write_cifar5m_part(tmp_path / "cifar5m_part0.npz", 70, 0),
             write_cifar5m_part(tmp_path / "part1.npz", 50, 1, compressed=True),  # the release's name
             write_cifar5m_part(tmp_path / "cifar5m_part2.npz", 40, 2)]
    held_out = write_cifar5m_part(tmp_path / "cifar5m_part5.npz", 25, 5)
    cifar10 = write_cifar10(tmp_path)
    return tmp_path, parts, held_out, cifar10


def expected_stream(parts, seed, block=30):
    xs, ys = [], []
    for part, (x, y) in enumerate(parts):
        for b, start in enumerate(range(0, len(y), block)):
            order = stratified_order(y[start:start + block], rng_for(seed, 1_000_003, part, b))
            xs.append(x[start:start + block][order])
            ys.append(y[start:start + block][order])
    return np.concatenate(xs).transpose(0, 3, 1, 2), np.concatenate(ys)


def test_cifar5m_streams_the_parts_in_order_and_tests_on_cifar10(cifar5m_root):
    root, parts, _, (_, _, x_test, y_test) = cifar5m_root
    spec = DataSpec("cifar5m", n_teacher=40, root=str(root))
    info = data.info(spec)  # parts 0..2: part 3 is missing, so the pool stops there
    assert (info.input_shape, info.num_classes, info.pool_size, info.n_test) == ((3, 32, 32), 10, 160, 20)
    loaded = data.load(spec, 160)
    x_expected, y_expected = expected_stream(parts, seed=0)
    np.testing.assert_array_equal(loaded.y_pool, y_expected)
    np.testing.assert_allclose(loaded.x_pool, normalised(x_expected, cifar.CIFAR10_MEAN, cifar.CIFAR10_STD),
                               rtol=0, atol=1e-5)
    assert_stratified(loaded.y_pool[:30], 10)  # each block is stratified
    assert_stratified(loaded.y_pool[70:100], 10)  # part 1's first block
    np.testing.assert_array_equal(loaded.y_test, y_test)  # CIFAR-10's test set
    np.testing.assert_allclose(loaded.x_test, normalised(x_test.reshape(-1, 3, 32, 32), cifar.CIFAR10_MEAN,
                                                         cifar.CIFAR10_STD), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(data.load(spec, 45).x_pool, loaded.x_pool[:45])  # a prefix
    data.check(spec, [4.0])
    one_line_error(lambda: data.check(spec, [4.1]), "maximum kappa is 4")


def test_cifar5m_reads_only_the_blocks_it_needs(cifar5m_root, monkeypatch):
    root, *_ = cifar5m_root
    reads = []

    class Spy(cifar5m.NpzMember):
        def read(self, rows):
            reads.append((self.path.name, self.key, rows))
            return super().read(rows)

    monkeypatch.setattr(cifar5m, "NpzMember", Spy)
    cifar5m.Cifar5m.load(DataSpec("cifar5m", n_teacher=40, root=str(root)), 45)
    # two blocks of 30 from part 0, nothing from parts 1 and 2
    assert reads == [("cifar5m_part0.npz", "X", 30), ("cifar5m_part0.npz", "Y", 30),
                     ("cifar5m_part0.npz", "X", 30), ("cifar5m_part0.npz", "Y", 30)]


def test_cifar5m_heldout_tests_on_part5(cifar5m_root):
    root, parts, (x_held, y_held), _ = cifar5m_root
    spec = DataSpec("cifar5m-heldout", n_teacher=40, n_test=15, root=str(root))
    assert data.info(spec).pool_size == 160 and data.info(spec).n_test == 15
    loaded = data.load(spec, 100)
    np.testing.assert_array_equal(loaded.y_pool, expected_stream(parts, seed=0)[1][:100])
    np.testing.assert_array_equal(loaded.y_test, y_held[:15])
    np.testing.assert_allclose(loaded.x_test, normalised(x_held[:15].transpose(0, 3, 1, 2), cifar.CIFAR10_MEAN,
                                                         cifar.CIFAR10_STD), rtol=0, atol=1e-5)
    one_line_error(lambda: data.info(DataSpec("cifar5m-heldout", root=str(root))),
                   "data.n_test=10000 is invalid: cifar5m-heldout's test images come from")


def test_cifar5m_errors_name_the_path(tmp_path, small_cifar):
    write_cifar10(tmp_path)
    one_line_error(lambda: data.info(DataSpec("cifar5m", root=str(tmp_path))),
                   f"missing: {tmp_path}/cifar5m_part0.npz")
    one_line_error(lambda: data.info(DataSpec("cifar5m-heldout", root=str(tmp_path))),
                   f"missing: {tmp_path}/cifar5m_part5.npz")
    absent = tmp_path / "absent"
    one_line_error(lambda: data.info(DataSpec("cifar5m", root=str(absent))),
                   f"expects it at {absent}/cifar-10-batches-py/test_batch")
    np.savez(tmp_path / "cifar5m_part0.npz", X=np.zeros((4, 3, 32, 32), np.uint8), Y=np.zeros(4, np.int64))
    one_line_error(lambda: data.info(DataSpec("cifar5m", root=str(tmp_path))),
                   "holds X uint8 [4, 3, 32, 32]; a CIFAR-5m part holds uint8 [n, 32, 32, 3]")
    np.savez(tmp_path / "cifar5m_part0.npz", images=np.zeros((4, 32, 32, 3), np.uint8))
    one_line_error(lambda: data.info(DataSpec("cifar5m", root=str(tmp_path))), "with an array 'X'")


# ---------------------------------------------------------------- image files

def write_image(path, rng, size=(40, 30), mode="RGB"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path, format="JPEG")


def shapes(rng):
    return [(40, 30), (30, 50), (64, 64), (20, 20)][rng.integers(4)]


def write_flowers102(root, rng):
    from scipy.io import savemat

    base = root / "flowers-102"
    labels = np.array([1, 2, 3] * 8, dtype=np.uint8)  # 24 images, 1-based labels as in the release
    for image_id in range(1, 25):
        write_image(base / "jpg" / f"image_{image_id:05d}.jpg", rng, shapes(rng))
    savemat(base / "imagelabels.mat", {"labels": labels[None, :]})  # [1, n] uint8, as released
    # setid.mat holds 1-based image ids per split, [1, n] uint16; each split here holds every class
    by_class = {c: [i for i in range(1, 25) if labels[i - 1] == c] for c in (1, 2, 3)}
    trn = [by_class[c][k] for c in (1, 2, 3) for k in (0, 1)]
    val = [by_class[c][k] for c in (1, 2, 3) for k in (2, 3)]
    tst = [i for i in range(1, 25) if i not in trn + val]
    savemat(base / "setid.mat", {"trnid": np.array([trn], np.uint16), "valid": np.array([val], np.uint16),
                                 "tstid": np.array([tst], np.uint16)})
    return 12, 12, 102


def write_dtd(root, rng):
    base = root / "dtd" / "dtd"
    classes = ["banded", "blotchy", "zigzagged"]
    lines = {"train": [], "val": [], "test": []}
    for c in classes:
        for k in range(1, 7):
            name = f"{c}_{k:04d}.jpg"
            write_image(base / "images" / c / name, rng, shapes(rng))
            lines[["train", "train", "val", "val", "test", "test"][k - 1]].append(f"{c}/{name}")
    (base / "labels").mkdir(parents=True)
    for split, rows in lines.items():
        for partition in (1, 2):  # the release has ten partitions; partition 1 is read
            (base / "labels" / f"{split}{partition}.txt").write_text("\n".join(rows) + "\n")
    return 12, 6, 3


def write_fgvc_aircraft(root, rng):
    base = root / "fgvc-aircraft-2013b" / "data"
    variants = ["707-320", "A300B4", "Cessna 172"]  # names may hold spaces
    (base / "images").mkdir(parents=True)
    (base / "variants.txt").write_text("\n".join(variants) + "\n")
    rows = {"trainval": [], "test": []}
    image_id = 34_300
    for v in variants:
        for k in range(4):
            image_id += 7  # ids are 7 digits with leading zeros, e.g. 0034309
            write_image(base / "images" / f"{image_id:07d}.jpg", rng, shapes(rng))
            rows["trainval" if k < 3 else "test"].append(f"{image_id:07d} {v}")
    for split, lines in rows.items():
        (base / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
    return 9, 3, 3


def write_caltech101(root, rng):
    base = root / "caltech101" / "101_ObjectCategories"
    for c in ["BACKGROUND_Google", "Faces_easy", "accordion", "airplanes"]:
        for k in range(1, 6):
            mode = "L" if (c == "accordion" and k == 2) else "RGB"  # the set has grayscale images
            write_image(base / c / f"image_{k:04d}.jpg", rng, shapes(rng), mode)
    return 12, 3, 3  # BACKGROUND_Google is not a class; 15 images, 20% (3) held out


def write_stanford_cars(root, rng):
    from scipy.io import savemat

    base = root / "stanford_cars"
    names = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi R8 Coupe 2012"]
    meta = np.empty((1, 3), dtype=object)
    meta[0, :] = names
    (base / "devkit").mkdir(parents=True)
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": meta})
    fields = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    for split, n, annos in [("train", 9, base / "devkit" / "cars_train_annos.mat"),
                            ("test", 6, base / "cars_test_annos_withlabels.mat")]:
        records = np.zeros((1, n), dtype=fields)
        for i in range(n):
            fname = f"{i + 1:05d}.jpg"
            write_image(base / f"cars_{split}" / fname, rng, shapes(rng))
            records[0, i] = (np.array([[1]]), np.array([[1]]), np.array([[10]]), np.array([[10]]),
                             np.array([[i % 3 + 1]], dtype=np.uint8), np.array([fname]))
        savemat(annos, {"annotations": records})
    return 9, 6, 3


def write_food101(root, rng):
    base = root / "food-101"
    meta = {"train": {}, "test": {}}
    image_id = 100_000
    for c in ["apple_pie", "baby_back_ribs", "waffles"]:
        for k in range(5):
            image_id += 13
            write_image(base / "images" / c / f"{image_id}.jpg", rng, shapes(rng))
            meta["train" if k < 3 else "test"].setdefault(c, []).append(f"{c}/{image_id}")
    (base / "meta").mkdir(parents=True)
    for split, content in meta.items():
        (base / "meta" / f"{split}.json").write_text(json.dumps(content))
    return 9, 6, 3


def write_imagefolder(root, rng):
    for split, per_class in [("train", 4), ("val", 2)]:
        for c in ["n01440764", "n02102040", "n02979186"]:
            for k in range(per_class):
                ext = ["JPEG", "jpg", "png"][k % 3]
                path = root / split / c / f"{c}_{k}.{ext}"
                if ext == "png":
                    from PIL import Image
                    Image.fromarray(rng.integers(0, 256, (25, 35, 3), dtype=np.uint8)).save(path)
                else:
                    write_image(path, rng, shapes(rng))
    return 12, 6, 3


def reference_splits(name, root):
    """(pool splits, test split) as torchvision's own classes read them, uint8 [n, 64, 64, 3]."""
    import torchvision.datasets as tvd
    from torchvision import transforms

    to_array = transforms.Compose([transforms.Lambda(lambda im: im.convert("RGB")), transforms.Resize(64),
                                   transforms.CenterCrop(64), transforms.Lambda(np.asarray)])

    def read(dataset):
        items = [dataset[i] for i in range(len(dataset))]
        return np.stack([x for x, _ in items]), np.array([y for _, y in items])

    r = str(root)
    if name == "imagefolder":
        return [read(tvd.ImageFolder(f"{r}/train", transform=to_array))], read(tvd.ImageFolder(f"{r}/val", transform=to_array))
    if name == "caltech101":
        return [read(tvd.Caltech101(r, transform=to_array))], None
    cls, pool, test, kwargs = {
        "flowers102": (tvd.Flowers102, ["train", "val"], "test", {}),
        "dtd": (tvd.DTD, ["train", "val"], "test", {"partition": 1}),
        "fgvc_aircraft": (tvd.FGVCAircraft, ["trainval"], "test", {}),
        "stanford_cars": (tvd.StanfordCars, ["train"], "test", {}),
        "food101": (tvd.Food101, ["train"], "test", {}),
    }[name]
    return ([read(cls(r, split=s, transform=to_array, **kwargs)) for s in pool],
            read(cls(r, split=test, transform=to_array, **kwargs)))


def as_uint8(x_float):
    """Undo the ImageNet normalisation: back to uint8 [n, 64, 64, 3]."""
    mean, std = np.reshape(images.IMAGENET_MEAN, (1, 3, 1, 1)), np.reshape(images.IMAGENET_STD, (1, 3, 1, 1))
    return np.rint((x_float * std + mean) * 255).astype(np.uint8).transpose(0, 2, 3, 1)


def as_multiset(x, y):
    return sorted((int(label), image.tobytes()) for image, label in zip(x, y))


WRITERS = {"flowers102": write_flowers102, "dtd": write_dtd, "fgvc_aircraft": write_fgvc_aircraft,
           "caltech101": write_caltech101, "stanford_cars": write_stanford_cars, "food101": write_food101,
           "imagefolder": write_imagefolder}


@pytest.fixture
def flowers_md5_skipped(monkeypatch):
    """torchvision's Flowers102 md5-checks imagelabels.mat and setid.mat against the release's;
    files written here cannot match, so the check becomes an existence check."""
    import torchvision.datasets.flowers102 as flowers

    monkeypatch.setattr(flowers, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_image_sets_read_as_torchvision_reads_them(name, tmp_path, flowers_md5_skipped):
    n_pool, n_test, num_classes = WRITERS[name](tmp_path, np.random.default_rng(0))
    spec = DataSpec(name, n_teacher=3, root=str(tmp_path))
    info = data.info(spec)
    assert (info.input_shape, info.num_classes, info.pool_size, info.n_test) == ((3, 64, 64), num_classes,
                                                                                  n_pool, n_test)
    loaded = data.load(spec, n_pool)
    assert loaded.x_pool.shape == (n_pool, 3, 64, 64) and loaded.x_pool.dtype == np.float32
    assert loaded.x_test.shape == (n_test, 3, 64, 64) and loaded.y_pool.dtype == np.int64

    pool_splits, test_split = reference_splits(name, tmp_path)
    x_ref = np.concatenate([x for x, _ in pool_splits])
    y_ref = np.concatenate([y for _, y in pool_splits])
    x_pool, x_test = as_uint8(loaded.x_pool), as_uint8(loaded.x_test)
    if test_split is None:  # caltech101: a seeded stratified share of the whole set is the test set
        assert as_multiset(np.concatenate([x_pool, x_test]), np.concatenate([loaded.y_pool, loaded.y_test])) == \
            as_multiset(x_ref, y_ref)
        assert np.bincount(loaded.y_test).tolist() == [1, 1, 1]
    else:
        assert as_multiset(x_pool, loaded.y_pool) == as_multiset(x_ref, y_ref)
        np.testing.assert_array_equal(x_test, test_split[0])  # the test set in torchvision's order
        np.testing.assert_array_equal(loaded.y_test, test_split[1])
    assert_stratified(loaded.y_pool, 3)

    again = data.load(spec, n_pool)  # from the decoded-image cache
    np.testing.assert_array_equal(again.x_pool, loaded.x_pool)
    np.testing.assert_array_equal(data.load(spec, 3).x_pool, loaded.x_pool[:3])
    other = data.load(DataSpec(name, n_teacher=3, seed=1, root=str(tmp_path)), n_pool)
    assert not np.array_equal(other.x_pool, loaded.x_pool)

    data.check(spec, [n_pool / 3])
    one_line_error(lambda: data.check(spec, [n_pool / 3 + 0.5]), f"maximum kappa is {n_pool / 3:.4g}")
    absent = tmp_path / "absent"
    message = one_line_error(lambda: data.info(DataSpec(name, root=str(absent))), f"missing: {absent}/")
    assert message.startswith(f"data.root: {name} expects {absent}/") or "class folders" in message
    one_line_error(lambda: data.info(DataSpec(name)), "data.root is unset")


def test_a_decoded_image_cache_follows_the_files(tmp_path):
    write_imagefolder(tmp_path, np.random.default_rng(0))
    spec = DataSpec("imagefolder", n_teacher=3, root=str(tmp_path))
    before = data.load(spec, 12)
    target = tmp_path / "val" / "n01440764" / "n01440764_0.JPEG"
    write_image(target, np.random.default_rng(9), (50, 50))
    os.utime(target, ns=(1, 1))  # a new mtime, whatever the file system's resolution
    after = data.load(spec, 12)
    np.testing.assert_array_equal(after.x_pool, before.x_pool)
    assert not np.array_equal(after.x_test, before.x_test)


def test_image_set_format_errors(tmp_path, flowers_md5_skipped):
    write_imagefolder(tmp_path, np.random.default_rng(0))
    (tmp_path / "val" / "n09999999").mkdir()
    write_image(tmp_path / "val" / "n09999999" / "x.jpg", np.random.default_rng(1))
    one_line_error(lambda: data.info(DataSpec("imagefolder", root=str(tmp_path))), "only in val: ['n09999999']")

    cars = tmp_path / "cars"
    write_stanford_cars(cars, np.random.default_rng(0))
    (cars / "stanford_cars" / "cars_test" / "00002.jpg").unlink()
    one_line_error(lambda: data.load(DataSpec("stanford_cars", n_teacher=3, root=str(cars)), 9),
                   "names " + str(cars / "stanford_cars" / "cars_test" / "00002.jpg"))

    flowers = tmp_path / "flowers"
    write_flowers102(flowers, np.random.default_rng(0))
    (flowers / "flowers-102" / "jpg" / "image_00001.jpg").write_bytes(b"not an image")
    one_line_error(lambda: data.load(DataSpec("flowers102", n_teacher=3, root=str(flowers)), 12),
                   "cannot read image")

    dtd = tmp_path / "dtd_root"
    write_dtd(dtd, np.random.default_rng(0))
    (dtd / "dtd" / "dtd" / "labels" / "test1.txt").write_text("banded/banded_0005.jpg\n")  # one class only
    one_line_error(lambda: data.info(DataSpec("dtd", root=str(dtd))), "name different classes")
