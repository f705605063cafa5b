"""tvm-mp: per-layer mixed-precision compilation of CNNs with Apache TVM.

Public API only; see the README and the tutorials.
"""

from .budget import Budget
from .compile import compile
from .errors import Error
from .frontend import canonicalize, load_onnx
from .layers import LayerInfo, UnquantizableLayer, list_layers, unquantizable_layers
from .model import CompiledModel, Report, load
from .precision import Precision, PrecisionPlan
from .search.adaptive import compile_adaptive
from .search.pareto import explore
from .search.space import default_options, format_options

__all__ = [
    "Budget",
    "CompiledModel",
    "Error",
    "LayerInfo",
    "Precision",
    "PrecisionPlan",
    "Report",
    "UnquantizableLayer",
    "canonicalize",
    "compile",
    "compile_adaptive",
    "default_options",
    "explore",
    "format_options",
    "list_layers",
    "load",
    "load_onnx",
    "unquantizable_layers",
]
__version__ = "0.1.0"
