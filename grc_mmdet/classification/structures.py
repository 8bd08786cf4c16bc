"""The data sample of the classification path (a label and predicted scores)."""
from mmengine.structures import BaseDataElement


class ClsDataSample(BaseDataElement):
    """``gt_label`` (LabelData with ``label``) and, after prediction,
    ``pred_score`` (a (num_classes,) tensor of probabilities)."""
