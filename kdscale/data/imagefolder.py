"""`imagefolder`: any ImageNet-style set of class folders, through torchvision.datasets.ImageFolder.

    root/train/<class>/<image>    the training pool
    root/val/<class>/<image>      the test set, with the same class folders

Classes are the folder names in sorted order (ImageFolder's rule); any extension ImageFolder
takes (.jpg, .jpeg, .png, ...). Images are decoded as torchvision's default loader does, resized
and centre-cropped to images.SIZE (64) a side, cached on disk as uint8 after the first load, and
normalised by torchvision's ImageNet statistics (kdscale.data.images).

Only small sets are practical: everything is held in memory as float32, 49,152 bytes an image at
64 x 64 (plus the uint8 copy, 12,288 bytes, while loading). 13,000 images (Imagenette) take
0.6 GB; ImageNet's 1.28M would take 63 GB and hours of decoding, so use a subset of classes.
"""
from __future__ import annotations

from kdscale.config import DataSpec
from kdscale.errors import SpecError
from kdscale.data import DATASETS, DataInfo
from kdscale.data.images import SIZE, data_root, load_image_files, no_test_size, require

LAYOUT = "class folders {root}/train/<class>/<image> and {root}/val/<class>/<image>"
SOURCE = "ImageNet-style: one folder per class, the same class folders in train and val"


def scan(spec: DataSpec) -> tuple[list[tuple[str, int]], list[tuple[str, int]], list[str]]:
    """(training samples, test samples, class names), each sample a (path, label)."""
    from torchvision.datasets import ImageFolder

    root = data_root(spec, "imagefolder", LAYOUT.replace("{root}/", ""), SOURCE)
    require(root, ["train", "val"], "imagefolder", LAYOUT, SOURCE)
    splits = {}
    for split in ("train", "val"):
        try:
            splits[split] = ImageFolder(str(root / split))  # lists files, opens none
        except (FileNotFoundError, OSError) as error:
            raise SpecError(f"data.root: imagefolder expects {LAYOUT.format(root=root)}; in "
                            f"{root / split}: {error}") from None
    train, val = splits["train"], splits["val"]
    if train.classes != val.classes:
        only_train = sorted(set(train.classes) - set(val.classes))[:5]
        only_val = sorted(set(val.classes) - set(train.classes))[:5]
        raise SpecError(f"data.root: imagefolder needs the same class folders in {root / 'train'} and "
                        f"{root / 'val'}; only in train: {only_train}, only in val: {only_val}")
    return list(train.samples), list(val.samples), list(train.classes)


@DATASETS.register("imagefolder")
class ImageFolderData:
    @staticmethod
    def info(spec: DataSpec) -> DataInfo:
        pool, test, classes = scan(spec)  # lists the files, reads none
        no_test_size(spec, "imagefolder", len(test))
        return DataInfo((3, SIZE, SIZE), len(classes), len(pool), len(test))

    @staticmethod
    def load(spec: DataSpec, n_pool: int):
        pool, test, _ = scan(spec)
        return load_image_files("imagefolder", pool, test, spec.seed, n_pool)

