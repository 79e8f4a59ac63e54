"""A classifier's label encoding: which landmark each class index stands for, and how many training images each
class has."""

import numpy as np
import pandas as pd


class LabelEncoding:
    """The classes a classifier was trained on: class index i is landmark id `landmark_ids[i]`, with `images[i]`
    training images (what class-size-aware losses need)."""

    def __init__(self, landmark_ids, images):
        self.landmark_ids = np.asarray(landmark_ids, dtype=np.int64)
        self.images = np.asarray(images, dtype=np.int64)
        self._index = pd.Series(np.arange(len(self.landmark_ids)), index=self.landmark_ids)

    @classmethod
    def from_classes(cls, classes: pd.DataFrame) -> "LabelEncoding":
        """From the filter stage's classes.csv (landmark_id, class_index, images)."""
        ordered = classes.sort_values("class_index")
        return cls(ordered["landmark_id"].to_numpy(), ordered["images"].to_numpy())

    def __len__(self):
        return len(self.landmark_ids)

    def indices(self, landmark_ids) -> np.ndarray:
        """The class index of each landmark id; -1 for one the classifier was not trained on."""
        return self._index.reindex(np.asarray(landmark_ids, dtype=np.int64)).fillna(-1).to_numpy(dtype=np.int64)

    def landmarks(self, indices) -> np.ndarray:
        return self.landmark_ids[np.asarray(indices, dtype=np.int64)]
