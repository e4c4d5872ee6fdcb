"""The transfer-learning sets of the paper's Table 1 that torchvision reads, from their own layouts.

Each is read by its torchvision.datasets class with download=False, so the files under `root` are
exactly what that class downloads or documents; nothing is fetched here. The class gives the
file list and labels (its `loader` argument is set to return the path, so nothing is decoded
twice); images are then decoded, resized and centre-cropped to images.SIZE (64) a side, cached on
disk as uint8 and normalised by torchvision's ImageNet statistics (kdscale.data.images).

| name | torchvision class | training pool | test set | classes |
|---|---|---|---|---|
| flowers102 | Flowers102 | train + val (1,020 + 1,020) | test (6,149) | 102 |
| dtd | DTD, partition 1 | train1 + val1 (1,880 + 1,880) | test1 (1,880) | 47 |
| fgvc_aircraft | FGVCAircraft, variants | trainval (6,667) | test (3,333) | 100 |
| caltech101 | Caltech101 | 80% of its 8,677 | 20%, stratified, seeded by the data seed | 101 |
| stanford_cars | StanfordCars | train (8,144) | test (8,041) | 196 |
| food101 | Food101 | train (75,750) | test (25,250) | 101 |

Validation splits join the pool, as is usual once hyperparameters are fixed (Kornblith et al.
2019, "Do better ImageNet models transfer better?"). Caltech101 has no official split; like
`digits`, a class-stratified prefix of an order seeded by the data seed is its test set.
Memory: float32 at 64 x 64 is 49,152 bytes an image; Food-101 takes 3.7 GB for its pool and
1.2 GB for its test set, and its first load decodes 101,000 JPEGs (cached afterwards).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdscale.config import DataSpec
from kdscale.errors import SpecError
from kdscale.data import DATASETS, DataInfo
from kdscale.data.images import SIZE, data_root, load_image_files, no_test_size, require
from kdscale.data.subsets import rng_for, stratified_order

TEST_FRACTION = 0.2  # share of a set without an official split that is held out for testing

HOW = "or torchvision.datasets.{cls}(root, download=True) on a machine with internet"


@dataclass(frozen=True)
class TransferSet:
    name: str
    cls: str  # the torchvision.datasets class
    required: tuple[str, ...]  # paths under root, checked before the class is built
    layout: str  # for error messages; {root} is the data root
    source: str
    pool_splits: tuple[str, ...]
    test_split: str | None  # None: held out from the pool by TEST_FRACTION
    kwargs: tuple[tuple[str, Any], ...] = ()


SETS = {s.name: s for s in [
    TransferSet("flowers102", "Flowers102",
                ("flowers-102/jpg", "flowers-102/imagelabels.mat", "flowers-102/setid.mat"),
                "{root}/flowers-102/jpg/image_00001.jpg..., imagelabels.mat and setid.mat "
                "(torchvision checks the two .mat files' md5)",
                "from https://www.robots.ox.ac.uk/~vgg/data/flowers/102/, " + HOW.format(cls="Flowers102"),
                ("train", "val"), "test"),
    TransferSet("dtd", "DTD",
                ("dtd/dtd/images", "dtd/dtd/labels/train1.txt", "dtd/dtd/labels/val1.txt",
                 "dtd/dtd/labels/test1.txt"),
                "{root}/dtd/dtd/images/<class>/<image>.jpg and {root}/dtd/dtd/labels/train1.txt, "
                "val1.txt, test1.txt (the dtd-r1.0.1 archive unpacked in {root}/dtd)",
                "from https://www.robots.ox.ac.uk/~vgg/data/dtd/, " + HOW.format(cls="DTD"),
                ("train", "val"), "test", (("partition", 1),)),
    TransferSet("fgvc_aircraft", "FGVCAircraft",
                ("fgvc-aircraft-2013b/data/images", "fgvc-aircraft-2013b/data/variants.txt",
                 "fgvc-aircraft-2013b/data/images_variant_trainval.txt",
                 "fgvc-aircraft-2013b/data/images_variant_test.txt"),
                "{root}/fgvc-aircraft-2013b/data/images/<id>.jpg, variants.txt and "
                "images_variant_trainval.txt, images_variant_test.txt",
                "from https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/, " + HOW.format(cls="FGVCAircraft"),
                ("trainval",), "test", (("annotation_level", "variant"),)),
    TransferSet("caltech101", "Caltech101",
                ("caltech101/101_ObjectCategories",),
                "{root}/caltech101/101_ObjectCategories/<class>/image_0001.jpg...",
                "from https://data.caltech.edu/records/20086, " + HOW.format(cls="Caltech101") + " and gdown",
                ("all",), None),
    TransferSet("stanford_cars", "StanfordCars",
                ("stanford_cars/devkit/cars_meta.mat", "stanford_cars/devkit/cars_train_annos.mat",
                 "stanford_cars/cars_train", "stanford_cars/cars_test_annos_withlabels.mat",
                 "stanford_cars/cars_test"),
                "{root}/stanford_cars/devkit/cars_meta.mat, devkit/cars_train_annos.mat, "
                "cars_test_annos_withlabels.mat, cars_train/ and cars_test/",
                "the original https://ai.stanford.edu/~jkrause/cars/car_dataset.html is offline and "
                "torchvision cannot download it: see torchvision.datasets.StanfordCars's docs",
                ("train",), "test"),
    TransferSet("food101", "Food101",
                ("food-101/meta/train.json", "food-101/meta/test.json", "food-101/images"),
                "{root}/food-101/meta/train.json, test.json and food-101/images/<class>/<id>.jpg",
                "from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/, " + HOW.format(cls="Food101"),
                ("train",), "test"),
]}


def _path_only(path):
    return str(path)


def build(tset: TransferSet, root: Path, split: str):
    """torchvision's data set for one split, reading metadata only (its loader returns the path)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, tset.cls)
    try:
        if tset.cls == "Caltech101":  # no split and no loader argument
            return cls(str(root), download=False)
        return cls(str(root), split=split, download=False, loader=_path_only, **dict(tset.kwargs))
    except (RuntimeError, OSError, KeyError, ValueError, IndexError, TypeError) as error:
        raise SpecError(f"data.root: torchvision.datasets.{tset.cls} cannot read {tset.name} under {root} "
                        f"({type(error).__name__}: {error}); it expects {tset.layout.format(root=root)} "
                        f"({tset.source})") from None


def classes_of(tset: TransferSet, dataset) -> list[str]:
    if tset.cls == "Caltech101":
        return list(dataset.categories)
    return list(dataset.classes)


def samples_of(tset: TransferSet, dataset) -> list[tuple[str, int]]:
    """(path, label) of every sample, in the data set's order."""
    if tset.cls == "Caltech101":
        # Caltech101 opens the image in __getitem__; its public index gives the file it opens.
        folder = os.path.join(dataset.root, "101_ObjectCategories")
        return [(os.path.join(folder, dataset.categories[y], f"image_{i:04d}.jpg"), int(y))
                for i, y in zip(dataset.index, dataset.y)]
    return [(str(path), int(label)) for path, label in (dataset[i] for i in range(len(dataset)))]


def scan(tset: TransferSet, spec: DataSpec) -> tuple[list, list, int]:
    """(training samples, test samples, number of classes); lists files, decodes none."""
    root = data_root(spec, tset.name, tset.layout.replace("{root}/", ""), tset.source)
    require(root, tset.required, tset.name, tset.layout, tset.source)
    splits = tset.pool_splits + ((tset.test_split,) if tset.test_split else ())
    datasets = {split: build(tset, root, split) for split in splits}
    classes = [classes_of(tset, d) for d in datasets.values()]
    if any(c != classes[0] for c in classes):
        # DTD, for one, numbers classes by those present in each split file: a split missing a
        # class would shift every later label.
        raise SpecError(f"data.root: {tset.name}'s splits {', '.join(splits)} under {root} name "
                        "different classes, so their labels would not agree")
    pool = [s for split in tset.pool_splits for s in samples_of(tset, datasets[split])]
    if tset.test_split:
        return pool, samples_of(tset, datasets[tset.test_split]), len(classes[0])
    n_test = int(len(pool) * TEST_FRACTION)
    order = stratified_order(np.asarray([y for _, y in pool]), rng_for(spec.seed, 7))
    test = [pool[i] for i in np.sort(order[:n_test])]
    return [pool[i] for i in np.sort(order[n_test:])], test, len(classes[0])


def _register(tset: TransferSet) -> None:
    class Transfer:
        @staticmethod
        def info(spec: DataSpec) -> DataInfo:
            pool, test, num_classes = scan(tset, spec)
            no_test_size(spec, tset.name, len(test))
            return DataInfo((3, SIZE, SIZE), num_classes, len(pool), len(test))

        @staticmethod
        def load(spec: DataSpec, n_pool: int):
            pool, test, _ = scan(tset, spec)
            return load_image_files(tset.name, pool, test, spec.seed, n_pool)

    Transfer.__name__ = Transfer.__qualname__ = f"Transfer_{tset.name}"
    DATASETS.register(tset.name)(Transfer)


for _tset in SETS.values():
    _register(_tset)
