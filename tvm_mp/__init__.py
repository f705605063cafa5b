"""tvm-mp: per-layer mixed-precision compilation of CNNs with Apache TVM.

Public API only; see the README and the tutorials.
"""

from .budget import Budget
from .errors import Error
from .precision import Precision, PrecisionPlan

__all__ = ["Budget", "Error", "Precision", "PrecisionPlan"]
__version__ = "0.1.0"
