"""Small real data sets that scikit-learn ships (no files, no network), as tables."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# data.name -> the scikit-learn loader
EXAMPLES = {
    "digits": "load_digits",  # 1,797 8x8 images of digits: 64 features, 10 classes
    "breast_cancer": "load_breast_cancer",  # 569 tumours: 30 features, malignant or benign
    "wine": "load_wine",  # 178 wines: 13 features, 3 cultivars
}


def read(name: str) -> tuple[pd.DataFrame, pd.Series]:
    """The features (named as scikit-learn names them) and labels of example ``name``;
    labels are the data set's own class names (``malignant``, ``benign``), or digits."""
    import pandas as pd
    from sklearn import datasets

    bunch = getattr(datasets, EXAMPLES[name])()
    frame = pd.DataFrame(bunch.data, columns=[str(c) for c in bunch.feature_names])
    return frame, pd.Series(bunch.target_names[bunch.target])
