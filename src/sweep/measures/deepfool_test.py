"""The DeepFool margin on the test split, beside the training split's (``deepfool``): does a model's distance to
its decision boundary carry over to images it never trained on? Off by default, as it doubles the measuring time:
``deepfool_test.enabled=true``. Same options as ``deepfool``; metrics ``deepfool_test_margin``, ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sweep.measures import Measure
from sweep.measures.deepfool import DeepFoolConfig, check_classes, margins, metric_names


@dataclass
class DeepFoolTestConfig(DeepFoolConfig):
    section: ClassVar[str] = "deepfool_test"
    enabled: bool = False
    split: str = "test"


MEASURE = Measure(name="deepfool_test", config=DeepFoolTestConfig, run=margins, metrics=metric_names("deepfool_test"),
                  headline="deepfool_test_margin", check=check_classes, beside=("deepfool_test_success_rate",))
