"""label_tools: sparse scribbles on an image -> dense per-pixel label image.

Data flow (one way): ``io`` (read) -> ``scribbles`` -> ``features`` -> ``unary`` (random forest)
-> ``crf`` (dense CRF) -> ``writers``. ``pipeline.segment`` joins the compute steps without any
I/O or window; ``annotate`` is the only module that opens a window and ``cli`` the only one that
parses options.

Conventions used everywhere:

* scribbles: uint8 (H, W), 0 = unlabelled, k = k-th class of the labels file (1-based);
* labels (output): uint8 (H, W), class id 0-based in labels-file order, 255 = no-data
  (the label GeoTIFF stores id + 1 with 0 = no-data instead, as GIS tools expect).
"""

__version__ = "0.1.0"

from .errors import InputError, LabelToolsError, OptionError, OutputError  # noqa: E402

__all__ = ["InputError", "LabelToolsError", "OptionError", "OutputError", "__version__"]
