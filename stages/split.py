"""Stage split: a seeded, stratified dev split of the filtered training data; records the sizes."""

import sys
from pathlib import Path

from landmark.data.layout import read_labels
from landmark.data.prepare import split_dev
from landmark.errors import exits_cleanly
from landmark.files import write_csv, write_json
from landmark.params import load_params
from landmark.settings import section


@exits_cleanly
def main(filtered_csv, out_dir, sizes_json):
    settings = section(load_params(), "split")
    train, dev = split_dev(read_labels(filtered_csv), settings.dev_fraction, settings.seed)
    write_csv(Path(out_dir) / "train.csv", train)
    write_csv(Path(out_dir) / "dev.csv", dev)
    sizes = {"train_images": len(train), "dev_images": len(dev), "classes": int(train["landmark_id"].nunique())}
    write_json(sizes_json, sizes)
    print(f"split: {sizes['train_images']} train and {sizes['dev_images']} dev images over {sizes['classes']} classes")


if __name__ == "__main__":
    main(*sys.argv[1:])
