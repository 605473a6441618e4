"""Built-in workloads; importing this package registers them."""
from harness.workloads import image_classification  # noqa: F401
